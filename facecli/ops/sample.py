"""Bilinear reads of frames at arbitrary points, straight from uint8 frames. Pure tensor functions.

``torch.nn.functional.grid_sample`` needs a float frame: a float copy of a batch of 4K frames is
hundreds of megabytes, of an 8000 x 8000 photo 768 MB, to read a few 192 x 192 face crops. These
functions gather the four neighbours of every point from the frame as it is (uint8 or float) and
blend them, so memory follows the number of points read, not the size of the frame.

Convention: a point ``(x, y)`` is in frame pixels with pixel ``k`` centred on ``k`` (OpenCV's, and
``grid_sample``'s with ``align_corners=True`` once normalised), so ``(0, 0)`` is the centre of the
top-left pixel.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

PADDING = ("zeros", "border")


def bilinear_taps(
    frames: Tensor, frame_idx: Tensor, points: Tensor, padding: str = "zeros"
) -> list[tuple[Tensor, Tensor]]:
    """The four neighbours of every point and their bilinear weights.

    Args:
        frames: Tensor[B, C, H, W] any dtype.
        frame_idx: Tensor[N] int64, the frame of each row of points.
        points: Tensor[N, P, 2] float (x, y) frame pixels.
        padding: "zeros" (neighbours outside the frame weigh 0) or "border" (points are first
            clamped into the frame, as ``grid_sample``'s border mode).

    Returns:
        Four (values Tensor[N, P, C] in the frames' dtype, weight Tensor[N, P] float32) pairs;
        the weights of a point sum to 1 (or less, outside the frame with zeros padding).
    """
    if padding not in PADDING:
        raise ValueError(f"padding must be one of {PADDING}, got {padding!r}")
    height, width = frames.shape[-2:]
    x, y = points[..., 0].float(), points[..., 1].float()
    if padding == "border":
        x, y = x.clamp(0, width - 1), y.clamp(0, height - 1)
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = x - x0, y - y0
    x0, y0 = x0.long(), y0.long()
    batch = frame_idx[:, None]
    taps = []
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            values = frames[batch, :, yi.clamp(0, height - 1), xi.clamp(0, width - 1)]  # [N, P, C]
            taps.append((values, wx * wy * inside))
    return taps


def sample_bilinear(
    frames: Tensor,
    frame_idx: Tensor,
    points: Tensor,
    padding: str = "zeros",
    transform: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Bilinear values of frames at points, channels first.

    Args:
        frames: Tensor[B, C, H, W] uint8 or float.
        frame_idx: Tensor[N] int64, the frame of each sample.
        points: Tensor[N, *S, 2] float (x, y) frame pixels (see the module docstring).
        padding: "zeros" or "border" (see :func:`bilinear_taps`).
        transform: applied to each neighbour's values Tensor[N, P, C] before blending (e.g. a
            colour conversion that must happen per pixel); default: as float32.

    Returns:
        Tensor[N, C', *S] float32, C' the channels ``transform`` returns (C without one).
    """
    num = points.shape[0]
    shape = points.shape[1:-1]
    flat = points.reshape(num, -1, 2)
    out = None
    for values, weight in bilinear_taps(frames, frame_idx, flat, padding):
        values = transform(values) if transform is not None else values.float()
        term = values * weight[..., None]
        out = term if out is None else out + term
    assert out is not None
    return out.permute(0, 2, 1).reshape(num, -1, *shape)
