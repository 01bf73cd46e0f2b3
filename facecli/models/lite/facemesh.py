"""MediaPipe face mesh (468 points + face presence) as a PyTorch module.

Architecture and weights from MediaPipe's ``face_landmark.tflite`` (Apache-2.0; Kartynnik et al.,
"Real-time Facial Surface Geometry from Monocular Video on Mobile GPUs", 2019), converted by
``scripts/lite_convert/facemesh.py``. Input: a 192x192 RGB crop in [0, 1] around a rotated
square ROI (see :mod:`facecli.ops.roi`). Output: 468 x (x, y, z) in crop pixels and a
face-presence logit.

The network is a stack of residual blocks: depthwise 3x3 (TF "SAME" padding) -> pointwise 1x1,
added to the input (max-pooled and zero-padded in channels when the block downsamples),
followed by a per-channel PReLU. Two heads branch from the 6x6 feature map.

Coordinates returned by :meth:`FaceMesh.run` are frame pixels; z is the model's depth in crop
pixels scaled by the same factor as x and y (``side / 192``), which is what MediaPipe does
(its normalised z times the frame width), so z is in frame-pixel units, smaller = nearer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facecli.models.lite.layers import Conv2dSame, add_shortcut
from facecli.models.weights import load_safetensors_into, packaged_lite_file
from facecli.ops.roi import crop_to_frame, detection_roi, roi_affine, warp_crops

INPUT_SIZE = 192
NUM_POINTS = 468
ROI_SCALE = 1.5


class ResidualBlock(nn.Module):
    """Depthwise 3x3 -> pointwise 1x1, plus the (pooled, channel-padded) input, then PReLU.

    Args:
        in_chs: input channels.
        out_chs: output channels (>= in_chs).
        stride: 1 or 2; with 2 the shortcut is a 2x2 max-pool.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.dw = Conv2dSame(in_chs, in_chs, 3, stride=stride, groups=in_chs)
        self.pw = nn.Conv2d(in_chs, out_chs, 1)
        self.act = nn.PReLU(out_chs)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = F.max_pool2d(x, 2) if self.stride == 2 else x
        return self.act(add_shortcut(self.pw(self.dw(x)), shortcut))


class _Head(nn.Module):
    """Residual blocks at 128 channels, 1x1 down to 32, one more block, 3x3/3 conv to 1x1."""

    def __init__(self, strides: tuple[int, ...], out_chs: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[ResidualBlock(128, 128, s) for s in strides])
        self.reduce = nn.Conv2d(128, 32, 1)
        self.reduce_act = nn.PReLU(32)
        self.refine = ResidualBlock(32, 32)
        self.out = nn.Conv2d(32, out_chs, 3, stride=3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.refine(self.reduce_act(self.reduce(self.blocks(x))))
        return self.out(x).flatten(1)


class FaceMeshNet(nn.Module):
    """The face-landmark network.

    ``forward`` takes Tensor[N, 3, 192, 192] float RGB in [0, 1] and returns
    ``(points Tensor[N, 468, 3] crop pixels, presence_logit Tensor[N])``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = Conv2dSame(3, 16, 3, stride=2)
        self.stem_act = nn.PReLU(16)
        stages = [(16, 16, 1), (16, 16, 1), (16, 32, 2), (32, 32, 1), (32, 32, 1), (32, 64, 2),
                  (64, 64, 1), (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 128, 1),
                  (128, 128, 2), (128, 128, 1), (128, 128, 1)]  # 96 -> 6 pixels
        self.backbone = nn.Sequential(*[ResidualBlock(i, o, s) for i, o, s in stages])
        self.mesh_head = _Head((2, 1, 1), NUM_POINTS * 3)
        self.presence_head = _Head((2,), 1)

    def forward_features(self, x: Tensor) -> Tensor:
        """Tensor[N, 3, 192, 192] -> Tensor[N, 128, 6, 6]."""
        return self.backbone(self.stem_act(self.stem(x)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.forward_features(x)
        points = self.mesh_head(features).reshape(-1, NUM_POINTS, 3)
        return points, self.presence_head(features)[:, 0]


class FaceMesh(nn.Module):
    """Detections -> 468-point mesh in frame pixels, batched over every face of a frame batch."""

    def __init__(self, net: FaceMeshNet | None = None) -> None:
        super().__init__()
        self.net = net if net is not None else FaceMeshNet()

    @torch.inference_mode()
    def run(self, frames: Tensor, frame_idx: Tensor, keypoints: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """Predict the mesh of every detected face.

        Args:
            frames: Tensor[B, 3, H, W] uint8 RGB.
            frame_idx: Tensor[N] int64, frame of each face.
            keypoints: Tensor[N, 6, 2] float frame pixels, BlazeFace order (right eye, left eye,
                nose tip, mouth, right tragion, left tragion); only the eyes are used.
            boxes: Tensor[N, 4] float (x1, y1, x2, y2) frame pixels.

        Returns:
            mesh: Tensor[N, 468, 3] float32; x, y frame pixels, z depth in frame-pixel units.
            presence: Tensor[N] float32 face-presence probability (MediaPipe drops < 0.5).
        """
        device = next(self.net.parameters()).device
        frames, frame_idx = frames.to(device), frame_idx.to(device)
        roi = detection_roi(boxes.to(device).float(), keypoints.to(device).float(), ROI_SCALE)
        return self.run_roi(frames, frame_idx, roi)

    @torch.inference_mode()
    def run_roi(self, frames: Tensor, frame_idx: Tensor, roi: Tensor) -> tuple[Tensor, Tensor]:
        """As :meth:`run`, from explicit ROIs Tensor[N, 4] (cx, cy, side, angle)."""
        affine = roi_affine(roi, INPUT_SIZE)
        crops = warp_crops(frames, frame_idx, affine, INPUT_SIZE)
        points, logit = self.net(crops)
        xy = crop_to_frame(points[..., :2], affine)
        z = points[..., 2:] * (roi[:, 2] / INPUT_SIZE)[:, None, None]
        return torch.cat([xy, z], dim=-1), torch.sigmoid(logit)


def load_facemesh(path: str | None = None, device: torch.device | str = "cpu") -> FaceMesh:
    """Build :class:`FaceMesh` with the packaged (or given) ``facemesh.safetensors`` weights.

    Raises:
        WeightsError: when the file is missing or does not match :class:`FaceMeshNet`.
    """
    net = load_safetensors_into(FaceMeshNet(), path or packaged_lite_file("facemesh.safetensors"))
    return FaceMesh(net).eval().to(device)
