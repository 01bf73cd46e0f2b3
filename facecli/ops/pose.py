"""Head pose from a 3D face mesh, as pure tensor functions.

The pose of a face is the similarity transform (rotation, isotropic scale, translation) that
best maps a canonical frontal face mesh onto the observed mesh in the least-squares sense
(Umeyama, "Least-squares estimation of transformation parameters between two point
patterns", 1991), solved in closed form with one batched SVD.

Frame (camera) axes, shared by the observed mesh and the canonical mesh:

* x to the right of the image, y down the image (image rows), z away from the camera
  (MediaPipe's mesh z: smaller = nearer). This is a right-handed frame.

Angles (radians), in facecli's output conventions (the design document's, shared by both model
sets' ``Pitch``, ``Roll``, ``Yaw`` columns); all three are zero for an upright face looking straight
at the camera:

* ``pitch`` > 0: the head pitches up (chin raised), so the nose tip moves up the image; a
  *left*-handed rotation about +x (because y points down, a right-handed turn about +x would
  bring the nose down).
* ``yaw`` > 0: the head turns to the subject's right, so in the image the face turns toward the
  viewer's left; a right-handed rotation about +y.
* ``roll`` > 0: the head tilts toward the subject's right shoulder, so in the image the top of
  the head moves toward the viewer's left (counter-clockwise as displayed); a *left*-handed
  rotation about +z (because y points down, a right-handed turn about +z looks clockwise).

The rotation is composed as ``R = Rz(-roll) @ Ry(yaw) @ Rx(-pitch)`` (``Rx``, ``Ry``, ``Rz``
right-handed): pitch about the camera's x axis first, then yaw about its y axis, then roll about
the viewing axis. With this order an in-plane rotation of the image changes Roll only, by exactly
the rotation angle. ``facecli.overlay.draw`` draws the head axes with the same matrix.
"""

from __future__ import annotations

import torch
from torch import Tensor


def similarity_fit(src: Tensor, dst: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Least-squares similarity transform ``dst ~ scale * R @ src + t``, batched.

    Args:
        src: Tensor[..., P, 3] source points (e.g. the canonical mesh, broadcast over the batch).
        dst: Tensor[..., P, 3] target points (e.g. observed meshes), same units on every axis.

    Returns:
        rotation: Tensor[..., 3, 3], a proper rotation (det = +1, never a reflection).
        scale: Tensor[...] >= 0, target units per source unit.
        translation: Tensor[..., 3], where the source origin lands in target coordinates.
    """
    src, dst = torch.broadcast_tensors(src, dst)
    src_mean = src.mean(dim=-2, keepdim=True)
    dst_mean = dst.mean(dim=-2, keepdim=True)
    a = src - src_mean
    b = dst - dst_mean
    cov = b.transpose(-1, -2) @ a  # [..., 3, 3], sum over points of b a^T
    u, sing, vh = torch.linalg.svd(cov)
    # Flip the weakest axis when the best orthogonal map would be a reflection.
    sign = torch.sign(torch.linalg.det(u @ vh))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    d = torch.ones_like(sing)
    d[..., 2] = sign
    rotation = u @ (d[..., :, None] * vh)
    spread = a.square().sum(dim=(-1, -2)).clamp_min(torch.finfo(a.dtype).tiny)
    scale = ((sing * d).sum(dim=-1) / spread).clamp_min(0.0)
    translation = dst_mean[..., 0, :] - scale[..., None] * (rotation @ src_mean[..., 0, :, None])[..., 0]
    return rotation, scale, translation


def _rx(angle: Tensor) -> Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([one, zero, zero, zero, c, -s, zero, s, c], dim=-1).reshape(*angle.shape, 3, 3)


def _ry(angle: Tensor) -> Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([c, zero, s, zero, one, zero, -s, zero, c], dim=-1).reshape(*angle.shape, 3, 3)


def _rz(angle: Tensor) -> Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([c, -s, zero, s, c, zero, zero, zero, one], dim=-1).reshape(*angle.shape, 3, 3)


def euler_to_matrix(pitch: Tensor, yaw: Tensor, roll: Tensor) -> Tensor:
    """Rotation matrix of head angles in facecli's convention (see the module docstring).

    Args:
        pitch, yaw, roll: Tensor[...] radians, broadcastable.

    Returns:
        Tensor[..., 3, 3] ``Rz(-roll) @ Ry(yaw) @ Rx(-pitch)`` in frame axes (x right, y down, z away).
    """
    pitch, yaw, roll = torch.broadcast_tensors(pitch, yaw, roll)
    return _rz(-roll) @ _ry(yaw) @ _rx(-pitch)


def matrix_to_euler(rotation: Tensor) -> Tensor:
    """Head angles of a rotation matrix, inverse of :func:`euler_to_matrix`.

    Args:
        rotation: Tensor[..., 3, 3] proper rotation in frame axes.

    Returns:
        Tensor[..., 3] (pitch, yaw, roll) radians; pitch and roll in [-pi, pi], yaw in
        [-pi/2, pi/2]. At yaw = +-90 degrees (gimbal lock) pitch is set to 0 and the rest goes to roll.
    """
    r = rotation
    cos_yaw = torch.sqrt(r[..., 0, 0].square() + r[..., 1, 0].square())
    yaw = torch.atan2(-r[..., 2, 0], cos_yaw)
    locked = cos_yaw < 1e-6
    # Rx(-pitch): its angle is atan2(R21, R22), so pitch is minus that
    pitch = torch.where(locked, torch.zeros_like(yaw), -torch.atan2(r[..., 2, 1], r[..., 2, 2]))
    # Rz(g) = Rz(-roll); g = atan2(R10, R00) normally, atan2(-R01, R11) when pitch is forced to 0.
    g = torch.where(locked, torch.atan2(-r[..., 0, 1], r[..., 1, 1]), torch.atan2(r[..., 1, 0], r[..., 0, 0]))
    return torch.stack([pitch, yaw, -g], dim=-1)


def head_pose(mesh: Tensor, canonical: Tensor) -> Tensor:
    """Head pose of every face from its mesh.

    Args:
        mesh: Tensor[N, P, 3] observed points; x, y frame pixels (y down), z depth in the same
            units (smaller = nearer). Only the first ``canonical.shape[0]`` points are used, so a
            478-point mesh (468 + iris) can be passed as is.
        canonical: Tensor[P0, 3] the frontal canonical mesh in the same axes (x right, y down,
            z away from the camera), any length unit.

    Returns:
        Tensor[N, 6] float32: pitch, roll, yaw (radians, facecli's convention), then X, Y = frame
        pixels where the canonical mesh's origin lands (a point inside the head, behind the nose),
        and Z = fitted scale, frame pixels per canonical unit (larger = bigger / nearer face).
        Rows of a mesh with non-finite values are NaN.
    """
    points = mesh[:, : canonical.shape[0]].float()
    finite = torch.isfinite(points).all(dim=2).all(dim=1)
    points = torch.where(finite[:, None, None], points, canonical.to(points))
    rotation, scale, translation = similarity_fit(canonical.to(points)[None], points)
    angles = matrix_to_euler(rotation)  # [N, 3] pitch, yaw, roll
    pose = torch.stack(
        [angles[:, 0], angles[:, 2], angles[:, 1], translation[:, 0], translation[:, 1], scale], dim=1
    )
    return torch.where(finite[:, None], pose, torch.full_like(pose, float("nan")))
