"""Face crops and the maps back to the frame. Pure tensor functions.

The feat-v2 chip is an *isotropic square pad*: the detector box is squared to its longer
side times ``expand``, centred on the box, not clamped to the frame; pixels outside the
frame are reflected. A chip-normalised point (u, v) in [0, 1] lies at frame pixel
(ox + u * side, oy + v * side).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from facecli.ops.sample import gather_bilinear
from facecli.types import FaceChips


def square_pad_geometry(boxes: Tensor, expand: float = 1.2) -> tuple[Tensor, Tensor]:
    """Square crop region of each box.

    Args:
        boxes: Tensor[N, 4] (x1, y1, x2, y2) frame pixels.
        expand: margin multiplier applied to the longer side.

    Returns:
        origin: Tensor[N, 2] (ox, oy) frame pixels of the square's top-left corner.
        side: Tensor[N] side length in frame pixels (at least 1).
    """
    boxes = boxes.float()
    size = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    side = (size * expand).clamp(min=1.0)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    return centre - side[:, None] / 2, side


def chip_sample_points(origin: Tensor, side: Tensor, size: int) -> Tensor:
    """Frame coordinates sampled by each chip pixel.

    Output pixel (i, j) samples x = ox + (j + 0.5) / size * side and y = oy + (i + 0.5) / size * side,
    read in the pixel-index convention (pixel k covers [k - 0.5, k + 0.5]), as the reference does.

    Args:
        origin: Tensor[N, 2] (ox, oy).
        side: Tensor[N].
        size: chip side S in pixels.

    Returns:
        Tensor[N, S, S, 2] (x, y) frame coordinates.
    """
    steps = (torch.arange(size, device=origin.device, dtype=torch.float32) + 0.5) / size  # [S]
    xs = origin[:, 0, None] + steps[None, :] * side[:, None]  # [N, S]
    ys = origin[:, 1, None] + steps[None, :] * side[:, None]  # [N, S]
    n = origin.shape[0]
    return torch.stack(
        [xs[:, None, :].expand(n, size, size), ys[:, :, None].expand(n, size, size)], dim=-1
    )


def sample_frames(
    frames: Tensor, points: Tensor, frame_idx: Tensor, padding_mode: str = "reflection"
) -> Tensor:
    """Bilinear samples of frames at given pixel-index coordinates, one frame per output.

    Loops over the frames of the batch (not over faces) so a frame is never copied per face.

    Args:
        frames: Tensor[B, C, H, W] float.
        points: Tensor[N, h, w, 2] (x, y) coordinates in the pixel-index convention.
        frame_idx: Tensor[N] int64 frame of each output.
        padding_mode: grid_sample padding for points outside the frame.

    Returns:
        Tensor[N, C, h, w] float32.
    """
    height, width = frames.shape[-2:]
    n, h, w, _ = points.shape
    scale = torch.tensor([2.0 / width, 2.0 / height], device=points.device)
    grid = (points + 0.5) * scale - 1  # align_corners=False normalisation
    out = frames.new_empty((n, frames.shape[1], h, w), dtype=torch.float32)
    for b in torch.unique(frame_idx).tolist():
        sel = (frame_idx == b).nonzero().squeeze(1)
        g = grid[sel].reshape(1, -1, w, 2)  # faces of frame b stacked along the height
        s = F.grid_sample(
            frames[b : b + 1].float(), g, mode="bilinear", padding_mode=padding_mode, align_corners=False
        )
        out[sel] = s.reshape(frames.shape[1], sel.numel(), h, w).transpose(0, 1)
    return out


def crop_square_pad(
    frames: Tensor, boxes: Tensor, frame_idx: Tensor, size: int = 256, expand: float = 1.2
) -> FaceChips:
    """Isotropic square-pad chips of every face.

    Args:
        frames: Tensor[B, 3, H, W] uint8 or float RGB; uint8 is scaled to [0, 1].
        boxes: Tensor[N, 4] (x1, y1, x2, y2) frame pixels.
        frame_idx: Tensor[N] int64 frame of each box.
        size: chip side in pixels.
        expand: margin multiplier.

    Returns:
        FaceChips with pixels Tensor[N, 3, size, size] in [0, 1].
    """
    origin, side = square_pad_geometry(boxes, expand)
    if boxes.shape[0] == 0:
        pixels = torch.zeros(0, 3, size, size, device=frames.device)
        return FaceChips(pixels=pixels, origin=origin, side=side)
    steps = (torch.arange(size, device=origin.device, dtype=torch.float32) + 0.5) / size
    xs = origin[:, 0, None] + steps[None, :] * side[:, None]  # [N, S], as chip_sample_points
    ys = origin[:, 1, None] + steps[None, :] * side[:, None]
    # only the pixels read are gathered (the values of grid_sample's reflection padding); the chip
    # is aligned with the frame, so x varies along columns only and y along rows only
    pixels = gather_bilinear(frames, frame_idx, xs[:, None, :], ys[:, :, None], padding="reflection")
    if frames.dtype == torch.uint8:
        pixels = pixels / 255.0
    return FaceChips(pixels=pixels.contiguous(), origin=origin, side=side)


def resize_longest(frames: Tensor, longest: int) -> tuple[Tensor, float]:
    """Downscale frames so the longest side is at most ``longest`` (never upscales).

    Args:
        frames: Tensor[B, 3, H, W] uint8 or float.
        longest: target length of the longest side in pixels.

    Returns:
        (resized float frames, scale) where a point p in the resized frame is p / scale in the original.
        uint8 frames are resized as uint8 (rounded to whole levels, as a stored smaller frame
        would be): torch's uint8 antialiased kernel is about 5x faster than resizing floats.
    """
    height, width = frames.shape[-2:]
    scale = min(1.0, longest / max(height, width))
    if scale >= 1.0:
        return frames.float(), 1.0
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    source = frames if frames.dtype == torch.uint8 and frames.device.type == "cpu" else frames.float()
    out = F.interpolate(source, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    return out.float(), new_w / width
