"""Rotated square regions of interest and the crops they define.

MediaPipe's landmark models look at a square, rotated crop of the frame. A region of interest
(ROI) here is a ``Tensor[N, 4]`` of ``(cx, cy, side, angle)``: centre and side in frame pixels,
angle in radians (positive turns the crop's x axis from the frame's +x towards +y, i.e.
clockwise on screen because y points down).

Pixel convention: a frame coordinate ``x`` addresses the centre of pixel ``x`` when ``x`` is an
integer (OpenCV's convention); MediaPipe's normalised coordinates times the frame width give
exactly these numbers. A crop of ``size`` pixels spans the ROI edge to edge, so crop pixel
``i`` samples the ROI at ``-side / 2 + i * side / size`` from the centre, and a model's output
coordinate ``u`` in crop pixels maps back through the same affine. This reproduces MediaPipe's
``ImageToTensorCalculator`` + ``LandmarkProjectionCalculator`` pair.

Everything is batched and device-agnostic; no Python loops over faces.
"""

from __future__ import annotations

import torch
from torch import Tensor

from facecli.ops.sample import sample_bilinear


def _square_roi(centre: Tensor, width: Tensor, height: Tensor, start: Tensor, end: Tensor, scale: float) -> Tensor:
    # MediaPipe DetectionsToRects + RectTransformation(square_long): rotate so start->end is
    # horizontal, take the long side of the (unrotated) box, scale it.
    delta = end - start
    angle = torch.atan2(delta[:, 1], delta[:, 0])
    side = torch.maximum(width, height) * scale
    return torch.cat([centre, side[:, None], angle[:, None]], dim=1)


def detection_roi(boxes: Tensor, keypoints: Tensor, scale: float = 1.5) -> Tensor:
    """Face ROI from a BlazeFace detection, as MediaPipe's face-mesh front end builds it.

    Centre of the box; side = ``scale * max(w, h)``; rotated so that the line from keypoint 0
    (right eye, on the image's left for an upright face) to keypoint 1 (left eye) is horizontal.

    Args:
        boxes: Tensor[N, 4] float (x1, y1, x2, y2) frame pixels.
        keypoints: Tensor[N, K>=2, 2] float (x, y) frame pixels in BlazeFace order.
        scale: side length relative to the box's long side.

    Returns:
        Tensor[N, 4] (cx, cy, side, angle): pixels, pixels, pixels, radians.
    """
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = boxes[:, 2:] - boxes[:, :2]
    return _square_roi(centre, size[:, 0], size[:, 1], keypoints[:, 0], keypoints[:, 1], scale)


def segment_roi(start: Tensor, end: Tensor, scale: float = 2.3) -> Tensor:
    """ROI around a segment (e.g. two eye corners), as MediaPipe's iris front end builds it.

    The box is the segment's axis-aligned bounding box; its long side times ``scale`` is the
    ROI side; the ROI is rotated so that ``start -> end`` is horizontal.

    Args:
        start: Tensor[N, 2] frame pixels (the corner on the image's left for an upright face).
        end: Tensor[N, 2] frame pixels.
        scale: side length relative to the bounding box's long side.

    Returns:
        Tensor[N, 4] (cx, cy, side, angle).
    """
    size = (end - start).abs()
    return _square_roi((start + end) / 2, size[:, 0], size[:, 1], start, end, scale)


def roi_affine(roi: Tensor, size: int, mirror: Tensor | None = None) -> Tensor:
    """Affine from crop pixel coordinates to frame pixel coordinates.

    ``[x, y] = A @ [u, v, 1]`` where ``(u, v)`` are crop pixels (0..size). With ``mirror`` the
    crop is flipped left-right: ``u`` is replaced by ``size - u`` (MediaPipe's flip of the
    normalised x coordinate, ``1 - x``).

    Args:
        roi: Tensor[N, 4] (cx, cy, side, angle).
        size: crop side in pixels.
        mirror: Tensor[N] bool, or None for no mirroring.

    Returns:
        Tensor[N, 2, 3] float, same dtype/device as ``roi``.
    """
    cx, cy, side, angle = roi.unbind(dim=1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    step = side / size
    half = side / 2
    col_u = torch.stack([cos * step, sin * step], dim=1)  # [N, 2]
    col_v = torch.stack([-sin * step, cos * step], dim=1)
    origin = torch.stack([cx - cos * half + sin * half, cy - sin * half - cos * half], dim=1)
    if mirror is not None:
        sign = 1.0 - 2.0 * mirror.to(roi.dtype)[:, None]  # -1 where mirrored
        origin = origin + (1.0 - sign) / 2 * size * col_u
        col_u = col_u * sign
    return torch.stack([col_u, col_v, origin], dim=2)


def crop_to_frame(points: Tensor, affine: Tensor) -> Tensor:
    """Map crop-pixel points to frame pixels.

    Args:
        points: Tensor[N, P, 2] (u, v) crop pixels.
        affine: Tensor[N, 2, 3] from :func:`roi_affine`.

    Returns:
        Tensor[N, P, 2] (x, y) frame pixels.
    """
    return points @ affine[:, :, :2].transpose(1, 2) + affine[:, None, :, 2]


def warp_crops(frames: Tensor, frame_idx: Tensor, affine: Tensor, size: int) -> Tensor:
    """Sample square crops from a batch of frames, bilinear, edges replicated.

    Each crop reads its four neighbours per pixel straight from the (uint8) frame, so memory
    follows the crops, not the frames (see :mod:`facecli.ops.sample`).

    Args:
        frames: Tensor[B, 3, H, W] uint8 (or float in [0, 255]) RGB.
        frame_idx: Tensor[N] int64, the frame of each crop (any order).
        affine: Tensor[N, 2, 3] crop pixels -> frame pixels (:func:`roi_affine`).
        size: crop side in pixels.

    Returns:
        Tensor[N, 3, size, size] float32 RGB in [0, 1].
    """
    num, device = affine.shape[0], affine.device
    if num == 0:
        return torch.zeros(0, 3, size, size, device=device)
    steps = torch.arange(size, device=device, dtype=torch.float32)
    v, u = torch.meshgrid(steps, steps, indexing="ij")
    crop_uv = torch.stack([u, v], dim=-1).reshape(1, size * size, 2).expand(num, -1, -1)
    xy = crop_to_frame(crop_uv, affine.float()).reshape(num, size, size, 2)
    return sample_bilinear(frames, frame_idx.to(frames.device), xy.to(frames.device), padding="border") / 255.0
