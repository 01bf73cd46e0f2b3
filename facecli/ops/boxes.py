"""Anchor geometry and box selection for the RetinaFace detector.

Pure tensor functions: priors (anchors) for an input size, decoding of the regression heads
into normalised boxes and landmarks, and the detection selection (score floor, top-k, per-image
NMS, final threshold, per-image cap).

Conventions: priors and decoded outputs are *normalised* by the input width/height; boxes are
``(x1, y1, x2, y2)``; landmarks are ``(x, y)`` pairs. The floating-point operation order of the
decoders follows py-feat 2.1.5 so that results agree bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import batched_nms

#: RetinaFace-R34 anchor layout: square anchor sides (pixels) per pyramid level and level strides.
RETINAFACE_MIN_SIZES: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))
RETINAFACE_STEPS: tuple[int, ...] = (8, 16, 32)
RETINAFACE_VARIANCES: tuple[float, float] = (0.1, 0.2)


def retinaface_priors(
    height: int,
    width: int,
    *,
    min_sizes: Sequence[Sequence[int]] = RETINAFACE_MIN_SIZES,
    steps: Sequence[int] = RETINAFACE_STEPS,
    device: torch.device | str | None = None,
) -> Tensor:
    """Anchors of every pyramid level for an input of ``height`` x ``width`` pixels.

    Level ``k`` has a ``ceil(height / steps[k]) x ceil(width / steps[k])`` grid; each cell holds one
    anchor per entry of ``min_sizes[k]``. Anchors are ordered by level, then row, then column,
    then size - the order in which the detection heads emit their outputs.

    Args:
        height: input height in pixels.
        width: input width in pixels.
        min_sizes: square anchor sides in pixels, one sequence per level.
        steps: stride in pixels of each level.
        device: where to create the tensor.

    Returns:
        Tensor[P, 4] float32 ``(cx, cy, w, h)`` normalised by (width, height, width, height).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"input size must be positive, got {height}x{width}")
    levels = []
    for sizes, step in zip(min_sizes, steps):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        # float64 on the CPU (MPS has no float64) with the reference's operation order
        # ((j + 0.5) * step / W), then float32: equal to the reference's Python-float loop.
        cy = (torch.arange(rows, dtype=torch.float64) + 0.5) * step / height
        cx = (torch.arange(cols, dtype=torch.float64) + 0.5) * step / width
        side = torch.tensor(sizes, dtype=torch.float64)
        n = len(sizes)
        grid_cy = cy[:, None, None].expand(rows, cols, n)
        grid_cx = cx[None, :, None].expand(rows, cols, n)
        sw = (side / width)[None, None, :].expand(rows, cols, n)
        sh = (side / height)[None, None, :].expand(rows, cols, n)
        levels.append(torch.stack([grid_cx, grid_cy, sw, sh], dim=-1).reshape(-1, 4))
    return torch.cat(levels).to(device=device, dtype=torch.float32)


def decode_boxes(
    loc: Tensor, priors: Tensor, variances: Sequence[float] = RETINAFACE_VARIANCES
) -> Tensor:
    """Turn box regressions into corner boxes.

    Args:
        loc: Tensor[..., P, 4] deltas ``(dx, dy, dw, dh)``: centre offsets in units of
            ``variances[0] * prior size`` and log-size ratios in units of ``variances[1]``.
        priors: Tensor[P, 4] ``(cx, cy, w, h)`` normalised.
        variances: ``(centre variance, size variance)``.

    Returns:
        Tensor[..., P, 4] ``(x1, y1, x2, y2)`` normalised by the input size.
    """
    centre = priors[:, :2] + loc[..., :2] * variances[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[..., 2:] * variances[1])
    top_left = centre - size / 2
    return torch.cat([top_left, size + top_left], dim=-1)


def encode_boxes(
    boxes: Tensor, priors: Tensor, variances: Sequence[float] = RETINAFACE_VARIANCES
) -> Tensor:
    """Inverse of :func:`decode_boxes` (used by tests and training-style tooling).

    Args:
        boxes: Tensor[..., P, 4] ``(x1, y1, x2, y2)`` normalised, with positive width and height.
        priors: Tensor[P, 4] ``(cx, cy, w, h)`` normalised.
        variances: ``(centre variance, size variance)``.

    Returns:
        Tensor[..., P, 4] deltas ``(dx, dy, dw, dh)``.
    """
    size = boxes[..., 2:] - boxes[..., :2]
    centre = boxes[..., :2] + size / 2
    offset = (centre - priors[:, :2]) / (variances[0] * priors[:, 2:])
    log_ratio = torch.log(size / priors[:, 2:]) / variances[1]
    return torch.cat([offset, log_ratio], dim=-1)


def decode_landmarks(
    pre: Tensor, priors: Tensor, variances: Sequence[float] = RETINAFACE_VARIANCES
) -> Tensor:
    """Turn landmark regressions into points.

    Args:
        pre: Tensor[..., P, 2K] offsets ``(dx1, dy1, ..., dxK, dyK)`` in units of
            ``variances[0] * prior size`` (K = 5 for RetinaFace).
        priors: Tensor[P, 4] ``(cx, cy, w, h)`` normalised.
        variances: ``(centre variance, size variance)``; only the first is used.

    Returns:
        Tensor[..., P, K, 2] ``(x, y)`` normalised by the input size.
    """
    offsets = pre.unflatten(-1, (-1, 2))  # [..., P, K, 2]
    return priors[:, None, :2] + offsets * variances[0] * priors[:, None, 2:]


def select_detections(
    boxes: Tensor,
    scores: Tensor,
    *,
    threshold: float = 0.5,
    score_floor: float = 0.02,
    top_k: int = 5000,
    iou_threshold: float = 0.4,
    max_per_image: int = 750,
) -> tuple[Tensor, Tensor]:
    """Choose the detections to keep from every anchor of a batch (py-feat 2.1.5 semantics).

    1. Drop anchors whose score is not above ``score_floor``.
    2. If more than ``top_k * B`` remain, keep the ``top_k * B`` best over the whole batch.
    3. Non-maximum suppression per image (torchvision ``batched_nms``, IoU > ``iou_threshold``
       suppresses).
    4. Keep scores ``>= threshold``; keep the ``max_per_image`` best of each image.

    Args:
        boxes: Tensor[B, P, 4] ``(x1, y1, x2, y2)`` in pixels (NMS is not scale invariant when
            boxes of different images are offset, so pass the same units as the reference).
        scores: Tensor[B, P] face probability.
        threshold: final score threshold.
        score_floor: pre-NMS score floor (strictly above).
        top_k: pre-NMS candidates per image, applied to the batch as a whole.
        iou_threshold: NMS overlap threshold.
        max_per_image: most detections kept per image.

    Returns:
        (frame, anchor): Tensor[N] int64 each, the image and anchor index of each kept
        detection, sorted by image ascending, then by score descending.
    """
    batch, num_anchors = scores.shape
    flat_scores = scores.reshape(-1)
    candidates = torch.nonzero(flat_scores > score_floor).squeeze(1)  # flat indices, [M]
    if candidates.numel() > top_k * batch:
        best = torch.argsort(flat_scores[candidates], descending=True)[: top_k * batch]
        candidates = candidates[best]
    frame = torch.div(candidates, num_anchors, rounding_mode="floor")
    keep = batched_nms(
        boxes.reshape(-1, 4)[candidates], flat_scores[candidates], frame, iou_threshold
    )  # sorted by score, descending
    kept = candidates[keep]
    kept = kept[flat_scores[kept] >= threshold]
    frame = torch.div(kept, num_anchors, rounding_mode="floor")
    order = torch.sort(frame, stable=True).indices  # image ascending, score order kept
    kept, frame = kept[order], frame[order]
    counts = torch.bincount(frame, minlength=batch)
    first = torch.cumsum(counts, 0) - counts  # position of each image's first detection
    rank = torch.arange(kept.numel(), device=kept.device) - first[frame]
    capped = rank < max_per_image
    kept, frame = kept[capped], frame[capped]
    return frame, kept - frame * num_anchors


def best_per_frame(frame: Tensor, scores: Tensor, n: int) -> Tensor:
    """The rows of the ``n`` best-scoring faces of each frame (``--max-faces``).

    Args:
        frame: Tensor[N] int64, each face's frame.
        scores: Tensor[N] float, each face's score.
        n: faces kept per frame (>= 1).

    Returns:
        Tensor[M] int64 row indices, ascending (the rows keep their order); ties in score keep
        the earlier row.
    """
    by_score = torch.sort(scores.float(), descending=True, stable=True).indices
    order = by_score[torch.sort(frame[by_score], stable=True).indices]  # frame ascending, then score
    sorted_frames = frame[order]
    first = torch.ones_like(sorted_frames, dtype=torch.bool)
    first[1:] = sorted_frames[1:] != sorted_frames[:-1]
    position = torch.arange(len(order), device=frame.device)
    group_start = torch.cummax(torch.where(first, position, torch.zeros_like(position)), dim=0).values
    return torch.sort(order[position - group_start < n]).values
