"""Picture changes from frame content: shot changes and unchanged scenes.

Pure tensor functions.

* Shot changes: colour-histogram distance between consecutive frames. A hard cut replaces most
  of the picture at once, so the per-channel colour distributions of the two frames barely
  overlap; motion within a shot (a face moving, a pan) shifts only a small part of them.
* Unchanged scenes: block thumbnails (the mean green level of every 8x8 cell) compared cell by
  cell. Anything that enters the picture, even a 24-pixel face, covers at least one whole cell
  and moves its mean; sensor and compression noise, averaged over a cell, stays well below the
  threshold callers use (facecli.pipeline.follow: 8 levels of 255).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

MAX_PIXELS = 1 << 16  # frames are subsampled to at most this many pixels per histogram
CELL = 8  # thumbnail cell side, frame pixels


def colour_histograms(frames: Tensor, bins: int = 16) -> Tensor:
    """Per-channel colour histograms of each frame, each summing to 1.

    Args:
        frames: Tensor[B, C, H, W] uint8.
        bins: bins per channel (must divide 256).

    Returns:
        Tensor[B, C, bins] float32.
    """
    if frames.dtype != torch.uint8 or frames.ndim != 4:
        raise ValueError(f"frames must be uint8 [B, C, H, W], got {frames.dtype} {tuple(frames.shape)}")
    if 256 % bins:
        raise ValueError(f"bins must divide 256, got {bins}")
    b, c, h, w = frames.shape
    step = max(1, math.ceil((h * w / MAX_PIXELS) ** 0.5))
    x = frames[:, :, ::step, ::step]
    shift = (256 // bins).bit_length() - 1  # bins divides 256: the bin of a value is value >> shift
    offset = (torch.arange(b * c, device=frames.device, dtype=torch.int32) * bins).reshape(b, c, 1, 1)
    index = (x >> shift).to(torch.int32) + offset  # [B, C, h, w], one bin range per frame and channel
    counts = torch.bincount(index.reshape(-1), minlength=b * c * bins).reshape(b, c, bins)
    return counts.float() / (x.shape[-1] * x.shape[-2])


def histogram_distance(a: Tensor, b: Tensor) -> Tensor:
    """One minus the histogram intersection, averaged over channels.

    Args:
        a, b: Tensor[..., C, bins] histograms summing to 1 per channel.

    Returns:
        Tensor[...] in [0, 1]: 0 for equal colour distributions, 1 for disjoint ones.
    """
    return 1.0 - torch.minimum(a, b).sum(-1).mean(-1)


def shot_changes(histograms: Tensor, previous: Tensor | None, threshold: float) -> Tensor:
    """Which frames start a new shot.

    Args:
        histograms: Tensor[B, C, bins] of consecutive frames (:func:`colour_histograms`).
        previous: Tensor[C, bins] of the frame before the first, or None (the first frame then
            starts no new shot).
        threshold: distance (:func:`histogram_distance`) above which a frame is a cut.

    Returns:
        Tensor[B] bool.
    """
    if histograms.shape[0] == 0:
        return torch.zeros(0, dtype=torch.bool, device=histograms.device)
    before = histograms[:-1] if previous is None else torch.cat([previous[None].to(histograms), histograms[:-1]])
    dist = histogram_distance(before, histograms[-before.shape[0] :]) if len(before) else histograms.new_zeros(0)
    cut = dist > threshold
    if previous is None:
        cut = torch.cat([cut.new_zeros(1), cut])
    return cut


def thumbnails(frames: Tensor) -> Tensor:
    """The mean green level of every CELL x CELL cell of each frame (every second pixel of every
    second row read; a partial cell at the right or bottom edge is left out).

    Args:
        frames: Tensor[B, C, H, W] uint8, RGB (C = 3) or grey (C = 1), any memory format.

    Returns:
        Tensor[B, H // CELL, W // CELL] float32, levels 0-255.
    """
    if frames.dtype != torch.uint8 or frames.ndim != 4:
        raise ValueError(f"frames must be uint8 [B, C, H, W], got {frames.dtype} {tuple(frames.shape)}")
    b, c, h, w = frames.shape
    if h < CELL or w < CELL:
        return torch.zeros(b, h // CELL, w // CELL, device=frames.device)
    green = frames[:, 1 if c >= 3 else 0, : h - h % CELL : 2, : w - w % CELL : 2]
    return F.avg_pool2d(green[:, None].float(), CELL // 2)[:, 0]


def picture_changed(thumbs: Tensor, reference: Tensor | None, threshold: float) -> Tensor:
    """Which frames differ from a reference frame anywhere.

    Args:
        thumbs: Tensor[B, h, w] of the frames (:func:`thumbnails`).
        reference: Tensor[h, w] of the reference frame, or None (every frame then counts as changed).
        threshold: levels a cell's mean must move by to count as a change.

    Returns:
        Tensor[B] bool: some cell moved by more than ``threshold`` (always True for frames too
        small to hold a whole cell, which have no thumbnail to compare).
    """
    if reference is None or reference.shape != thumbs.shape[1:] or reference.numel() == 0:
        return torch.ones(thumbs.shape[0], dtype=torch.bool, device=thumbs.device)
    return ((thumbs - reference.to(thumbs)).abs() > threshold).flatten(1).any(dim=1)
