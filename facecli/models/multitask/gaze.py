"""Gaze head of the feat-v2 model (v2.5 per-eye linears and the v2.6 options).

Gaze is (yaw, pitch) in radians. The direction vector convention is
x = sin(yaw) cos(pitch), y = sin(pitch), z = -cos(yaw) cos(pitch).

Options, each read from the checkpoint config:
  * eye ROI: features pooled with ``roi_align`` from the stride-16 backbone map around each eye,
    the eye centre being the midpoint of two corner vertices of the predicted mesh;
  * 6D pose: the first two columns of the predicted head rotation matrix;
  * hidden: each per-eye branch becomes Linear-GELU-Linear;
  * bins: per-axis logits over angle bins; the output is the softmax expectation of bin centres;
  * head frame: the branches predict a direction in the head frame, rotated by the predicted pose.

Parameter names (``left_yaw`` ... ``right_pitch``, ``left``/``right``, ``enc``, ``proj``, ``norm``)
follow the published weight file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

# MediaPipe-478 eye corner vertices; the eye box is centred on their midpoint.
LEFT_EYE_CORNERS: tuple[int, int] = (33, 133)
RIGHT_EYE_CORNERS: tuple[int, int] = (362, 263)


def rotation_matrix(rotation_vector: Tensor) -> Tensor:
    """Rodrigues formula: axis-angle vectors to rotation matrices.

    Args:
        rotation_vector: Tensor[B, 3], axis times angle in radians.

    Returns:
        Tensor[B, 3, 3].
    """
    angle = rotation_vector.norm(dim=-1, keepdim=True).clamp_min(1e-8)  # [B, 1]
    kx, ky, kz = (rotation_vector / angle).unbind(-1)
    zero = torch.zeros_like(kx)
    skew = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], dim=-1).view(-1, 3, 3)
    angle = angle.unsqueeze(-1)  # [B, 1, 1]
    identity = torch.eye(3, dtype=rotation_vector.dtype, device=rotation_vector.device)
    return identity + torch.sin(angle) * skew + (1.0 - torch.cos(angle)) * (skew @ skew)


def rotation_6d(rotation_vector: Tensor) -> Tensor:
    """First two columns of the rotation matrix, row-major: (R00, R01, R10, R11, R20, R21).

    Args:
        rotation_vector: Tensor[B, 3] radians.

    Returns:
        Tensor[B, 6].
    """
    return rotation_matrix(rotation_vector)[:, :, :2].flatten(1)


def yaw_pitch_from_direction(direction: Tensor) -> Tensor:
    """Direction vectors to (yaw, pitch) radians (inverse of the module-level convention).

    Args:
        direction: Tensor[B, 3], any length.

    Returns:
        Tensor[B, 2] (yaw, pitch) radians.
    """
    x, y, z = F.normalize(direction, dim=-1, eps=1e-8).unbind(-1)
    limit = 1.0 - 1e-7
    return torch.stack([torch.atan2(x, -z), torch.asin(y.clamp(-limit, limit))], dim=-1)


def bin_centers(n_bins: int, lo_deg: float, hi_deg: float) -> Tensor:
    """Centres of ``n_bins`` equal bins over [lo_deg, hi_deg], in radians. Returns Tensor[n_bins] float32."""
    edges = torch.linspace(lo_deg, hi_deg, n_bins + 1, dtype=torch.float32)
    return torch.deg2rad(0.5 * (edges[:-1] + edges[1:]))


class EyeFeatures(nn.Module):
    """Per-eye features pooled from a backbone map around the eye centres of the predicted mesh.

    Args:
        in_ch: channels of the backbone map.
        out_dim: per-eye feature width.
        roi_size: roi_align output side.
        box_side: eye box side in input pixels.
        feat_stride: input pixels per map cell.
        width: channels of the small conv encoder.
    """

    def __init__(
        self, in_ch: int, out_dim: int, roi_size: int, box_side: float, feat_stride: int, width: int = 256
    ) -> None:
        super().__init__()
        self.roi_size = roi_size
        self.box_side = box_side
        self.spatial_scale = 1.0 / feat_stride
        self.enc = nn.Sequential(
            nn.Conv2d(in_ch, width, 3, padding=1, bias=False),
            nn.GroupNorm(8, width),
            nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.GroupNorm(8, width),
            nn.GELU(),
        )
        self.proj = nn.Linear(width * roi_size * roi_size, out_dim)
        self.norm = nn.LayerNorm(out_dim)

    def eye_boxes(self, mesh_px: Tensor) -> Tensor:
        """Square boxes around both eyes, left eyes first.

        Args:
            mesh_px: Tensor[B, V, 2] mesh x, y in input pixels.

        Returns:
            Tensor[2B, 5] rows (batch index, x1, y1, x2, y2) for ``roi_align``.
        """
        batch = mesh_px.shape[0]
        corners = torch.tensor(LEFT_EYE_CORNERS + RIGHT_EYE_CORNERS, device=mesh_px.device)
        centres = mesh_px[:, corners].view(batch, 2, 2, 2).mean(dim=2)  # [B, eye, xy]
        centres = centres.transpose(0, 1).reshape(2 * batch, 2)  # left block, then right block
        half = 0.5 * self.box_side
        index = torch.arange(batch, device=mesh_px.device, dtype=mesh_px.dtype).repeat(2).unsqueeze(-1)
        return torch.cat([index, centres - half, centres + half], dim=-1)

    def forward(self, feature_map: Tensor, mesh_px: Tensor) -> tuple[Tensor, Tensor]:
        """Args:
            feature_map: Tensor[B, C, H, W] at ``feat_stride``.
            mesh_px: Tensor[B, V, 2] mesh x, y in input pixels.

        Returns:
            (left, right) Tensor[B, out_dim] each.
        """
        boxes = self.eye_boxes(mesh_px).to(feature_map.dtype)
        rois = roi_align(feature_map, boxes, self.roi_size, spatial_scale=self.spatial_scale, aligned=True)
        features = self.norm(self.proj(self.enc(rois).flatten(1)))  # [2B, out_dim]
        left, right = features.chunk(2, dim=0)
        return left, right


class GazeHead(nn.Module):
    """Per-eye gaze branches averaged into (yaw, pitch).

    Args:
        in_dim: width of the unified features.
        eye_dim: per-eye feature width (0 = no eye features).
        pose_dim: 6 to read the 6D head rotation, else 0.
        head_frame: branches output a head-frame direction (3 values), rotated by the pose.
        hidden: > 0 makes each branch Linear-GELU-Linear.
        n_bins: > 0 makes each branch output 2 * n_bins logits (yaw bins, then pitch bins).
        bin_lo_deg, bin_hi_deg: range covered by the bins, degrees.
    """

    def __init__(
        self,
        in_dim: int,
        eye_dim: int = 0,
        pose_dim: int = 0,
        head_frame: bool = False,
        hidden: int = 0,
        n_bins: int = 0,
        bin_lo_deg: float = -180.0,
        bin_hi_deg: float = 180.0,
    ) -> None:
        super().__init__()
        if n_bins and head_frame:
            raise ValueError("gaze bins and head-frame output are mutually exclusive")
        self.head_frame = head_frame
        self.n_bins = n_bins
        self.per_axis = not (hidden or head_frame or n_bins)  # v2.5 layout: four scalar linears
        side_in = in_dim + eye_dim + pose_dim
        out_dim = 3 if head_frame else (2 * n_bins if n_bins else 2)
        if self.per_axis:
            self.left_yaw = nn.Linear(side_in, 1)
            self.left_pitch = nn.Linear(side_in, 1)
            self.right_yaw = nn.Linear(side_in, 1)
            self.right_pitch = nn.Linear(side_in, 1)
        elif hidden:
            self.left = nn.Sequential(nn.Linear(side_in, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
            self.right = nn.Sequential(nn.Linear(side_in, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
        else:
            self.left = nn.Linear(side_in, out_dim)
            self.right = nn.Linear(side_in, out_dim)
        if n_bins:
            self.register_buffer("bin_centers", bin_centers(n_bins, bin_lo_deg, bin_hi_deg), persistent=False)

    def forward(
        self,
        left_in: Tensor,
        right_in: Tensor,
        head_rotation: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Args:
            left_in, right_in: Tensor[B, side_in] branch inputs (unified ++ eye ++ 6D pose).
            head_rotation: Tensor[B, 3, 3], required for head-frame output.

        Returns:
            (gaze Tensor[B, 2] (yaw, pitch) radians, bin logits Tensor[B, 2, n_bins] or None).
        """
        if self.per_axis:
            yaw = 0.5 * (self.left_yaw(left_in) + self.right_yaw(right_in))
            pitch = 0.5 * (self.left_pitch(left_in) + self.right_pitch(right_in))
            return torch.cat([yaw, pitch], dim=-1), None
        out = 0.5 * (self.left(left_in) + self.right(right_in))
        if self.n_bins:
            logits = out.view(-1, 2, self.n_bins)
            gaze = (logits.softmax(dim=-1) * self.bin_centers.to(logits.dtype)).sum(dim=-1)
            return gaze, logits
        if self.head_frame:
            direction = F.normalize(out, dim=-1, eps=1e-8)
            if head_rotation is None:
                raise ValueError("head-frame gaze needs the head rotation")
            return yaw_pitch_from_direction((head_rotation @ direction.unsqueeze(-1)).squeeze(-1)), None
        return out, None
