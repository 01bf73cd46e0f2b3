"""Bilinear sampling of frames at given points by gathering only the pixels read.

``torch.nn.functional.grid_sample`` needs float frames: every crop of a batch would first turn
the whole batch into float32 (a 1280x720 frame is 11 MB as float, and the crops read a few
percent of it). :func:`gather_bilinear` reads the four neighbours of every sample point straight
from the uint8 (or float) frames and blends them, with the same arithmetic and the same edge
rules as ``grid_sample(..., align_corners=False)`` on pixel-index coordinates:

* ``border``: coordinates clamped to the frame (edge pixels repeated);
* ``reflection``: coordinates reflected at the frame's outer edges (-0.5 and W - 0.5), then clamped;
* ``zeros``: neighbours outside the frame read ``fill`` (0 unless given).

Coordinates are in the pixel-index convention: ``x = k`` is the centre of pixel column ``k``.
Pure tensor functions; no Python loops over faces or frames.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _reflect(coord: Tensor, size: int) -> Tensor:
    """grid_sample's reflection (align_corners=False): mirror at -0.5 and size - 0.5, then clamp."""
    span = float(size)
    x = (coord + 0.5).abs()
    extra = torch.remainder(x, span)
    flips = torch.floor(x / span)
    x = torch.where(torch.remainder(flips, 2) == 0, extra, span - extra) - 0.5
    return x.clamp(0, size - 1)


def gather_bilinear(
    frames: Tensor,
    frame_idx: Tensor,
    x: Tensor,
    y: Tensor,
    padding: str = "border",
    fill: Tensor | None = None,
    pixel_fn: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Bilinear samples of frames at points (x[n], y[n]) of frame ``frame_idx[n]``.

    Args:
        frames: Tensor[B, C, H, W] uint8 or float, any memory format (channels-last frames, as
            decoded, are read without a copy).
        frame_idx: Tensor[N] int64, the frame of each sample set.
        x, y: float pixel coordinates (pixel-index convention), Tensor[N, h, w] each, or any shapes
            that broadcast to it (a crop aligned with the frame passes x as [N, 1, w] and y as
            [N, h, 1]: the per-axis arithmetic is then done once per row and column).
        padding: "border", "reflection" or "zeros" (see the module docstring).
        fill: Tensor[N] value of neighbours outside the frame with "zeros" (default 0).
        pixel_fn: applied to the gathered neighbours Tensor[..., C] uint8/float before they are
            blended, returning Tensor[..., C'] float (e.g. a colour-to-grey conversion that must
            happen per pixel, before interpolation).

    Returns:
        Tensor[N, C', h, w] float32 (channels-last memory: a view of [N, h, w, C']).
    """
    b, c, height, width = frames.shape
    n = frame_idx.shape[0]
    h, w = torch.broadcast_shapes(x.shape, y.shape)[1:]
    if n == 0:
        out_c = c if pixel_fn is None else pixel_fn(frames.new_zeros(1, c)).shape[-1]
        return torch.zeros(0, out_c, h, w, device=frames.device)
    pixels = frames.permute(0, 2, 3, 1)
    if not pixels.is_contiguous():
        pixels = pixels.contiguous()
    pixels = pixels.reshape(b * height * width, c)
    x, y = x.float(), y.float()
    if padding == "reflection":
        x, y = _reflect(x, width), _reflect(y, height)
    elif padding == "border":
        x, y = x.clamp(0, width - 1), y.clamp(0, height - 1)
    elif padding != "zeros":
        raise ValueError(f"padding must be border, reflection or zeros, got {padding!r}")
    x0f, y0f = torch.floor(x), torch.floor(y)
    wx, wy = (x - x0f)[..., None], (y - y0f)[..., None]  # [N, ., ., 1]
    x0, y0 = x0f.long(), y0f.long()
    base = (frame_idx.to(frames.device).long() * (height * width))[:, None, None]
    cols = (x0.clamp(0, width - 1), (x0 + 1).clamp(0, width - 1))
    rows = (y0.clamp(0, height - 1) * width + base, (y0 + 1).clamp(0, height - 1) * width + base)
    if padding == "zeros":
        in_x = ((x0 >= 0) & (x0 < width), (x0 + 1 >= 0) & (x0 + 1 < width))
        in_y = ((y0 >= 0) & (y0 < height), (y0 + 1 >= 0) & (y0 + 1 < height))
        outside = fill[:, None, None, None].float() if fill is not None else 0.0

    def tap(i: int, j: int) -> Tensor:
        value = pixels[rows[i] + cols[j]]  # [N, h, w, C]
        value = pixel_fn(value) if pixel_fn is not None else value.float()
        if padding == "zeros":
            value = torch.where((in_y[i] & in_x[j])[..., None], value, outside)
        return value

    top = torch.lerp(tap(0, 0), tap(0, 1), wx)
    bottom = torch.lerp(tap(1, 0), tap(1, 1), wx)
    return torch.lerp(top, bottom, wy).permute(0, 3, 1, 2)
