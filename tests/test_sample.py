"""gather_bilinear (crops read only their pixels) against torch's grid_sample, and its users."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from facecli.ops.align import _binomial_down, _max_level, chip_grid, dlib_chip_affine, pyramid_levels, warp_chips
from facecli.ops.sample import gather_bilinear


def _grid_sample(frames, idx, x, y, padding):
    """Reference: grid_sample on float frames (align_corners=False, pixel-index coordinates)."""
    h, w = frames.shape[-2:]
    grid = torch.stack([(x + 0.5) * 2 / w - 1, (y + 0.5) * 2 / h - 1], -1)
    return torch.cat([
        F.grid_sample(frames[i : i + 1].float(), grid[k : k + 1], padding_mode=padding, align_corners=False)
        for k, i in enumerate(idx.tolist())
    ])


@pytest.mark.parametrize("padding", ["border", "reflection", "zeros"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_matches_grid_sample(padding, layout):
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (3, 3, 37, 53), dtype=torch.uint8, generator=gen)
    if layout == "channels_last":
        frames = frames.contiguous(memory_format=torch.channels_last)
    idx = torch.tensor([0, 2, 1, 2, 0])
    x = torch.rand(5, 7, 9, generator=gen) * 90 - 20  # well outside the frame on both sides
    y = torch.rand(5, 7, 9, generator=gen) * 70 - 15
    ours = gather_bilinear(frames, idx, x, y, padding)
    assert ours.shape == (5, 3, 7, 9) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, _grid_sample(frames, idx, x, y, padding), atol=2e-3, rtol=0)
    as_float = gather_bilinear(frames.float(), idx, x, y, padding)
    torch.testing.assert_close(as_float, ours, atol=1e-4, rtol=0)


def test_fill_and_pixel_fn():
    frames = torch.full((1, 3, 4, 4), 100, dtype=torch.uint8)
    x = torch.tensor([[[-3.0, 1.5, 10.0]]])
    y = torch.zeros(1, 1, 3)
    out = gather_bilinear(frames, torch.tensor([0]), x, y, "zeros", fill=torch.tensor([7.0]),
                          pixel_fn=lambda v: v.float().mean(-1, keepdim=True) + 1)
    assert out.shape == (1, 1, 1, 3)
    assert out.flatten().tolist() == [7.0, 101.0, 7.0]  # outside: the fill; inside: pixel_fn's value
    assert gather_bilinear(frames, torch.zeros(0, dtype=torch.long), torch.zeros(0, 2, 2), torch.zeros(0, 2, 2)).shape == (0, 3, 2, 2)
    with pytest.raises(ValueError, match="padding"):
        gather_bilinear(frames, torch.tensor([0]), x, y, "wrap")


def test_square_pad_chips_equal_the_grid_sample_chips(astronaut):
    from facecli.ops.crops import chip_sample_points, crop_square_pad, sample_frames, square_pad_geometry

    frames = torch.from_numpy(astronaut).permute(2, 0, 1)[None]  # channels-last uint8, as decoded
    boxes = torch.tensor([[170.0, 30.0, 300.0, 190.0], [-40.0, 400.0, 90.0, 560.0]])  # one cut by two edges
    idx = torch.zeros(2, dtype=torch.long)
    chips = crop_square_pad(frames, boxes, idx, 256, 1.2)
    origin, side = square_pad_geometry(boxes, 1.2)
    reference = sample_frames(frames.float() / 255.0, chip_sample_points(origin, side, 256), idx)
    torch.testing.assert_close(chips.pixels, reference, atol=1e-5, rtol=0)


def _grid_sample_loop(frames: torch.Tensor, frame_idx: torch.Tensor, points: torch.Tensor,
                      padding: str) -> torch.Tensor:
    """One grid_sample per row of points on the float frame (pixel k centred on k: align_corners=True)."""
    height, width = frames.shape[-2:]
    out = []
    for n in range(points.shape[0]):
        grid = points[n] / torch.tensor([width - 1.0, height - 1.0]) * 2 - 1
        one = F.grid_sample(frames[frame_idx[n], None].float(), grid[None], padding_mode=padding, align_corners=True)
        out.append(one[0])
    return torch.stack(out)


def _whole_frame_chips(frames: torch.Tensor, frame_idx: torch.Tensor, affine: torch.Tensor,
                      size: int) -> torch.Tensor:
    """dlib's chips as the pyramid of the whole float frame gives them (the plain reference)."""
    grid = chip_grid(affine, size)
    levels = pyramid_levels(affine, size).clamp(max=_max_level(*frames.shape[-2:]))
    out = torch.zeros(affine.shape[0], frames.shape[1], size, size)
    level_frames = frames.float()
    for level in range(int(levels.max()) + 1):
        if level > 0:
            level_frames = _binomial_down(level_frames)
            grid = grid / 2 - 1
        for n in (levels == level).nonzero().squeeze(1).tolist():
            out[n] = _grid_sample_loop(level_frames, frame_idx[n : n + 1], grid[n : n + 1], "zeros")[0]
    return out


def test_warp_chips_reads_only_the_region_it_needs_yet_equals_the_whole_frame_pyramid():
    gen = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (2, 3, 300, 420), generator=gen, dtype=torch.uint8)
    template = torch.tensor([[0.2, 0.2], [0.8, 0.2], [0.5, 0.5], [0.4, 0.8], [0.6, 0.8]])
    points, frame_idx = [], []
    for scale, shift, f in ((30, (100, 80), 0), (120, (150, 60), 1), (260, (60, 20), 0),  # levels 0, 1, 2
                            (200, (330, 200), 1), (160, (-60, -40), 0)):  # at the frame's edges
        points.append(template * scale + torch.tensor(shift, dtype=torch.float32))
        frame_idx.append(f)
    affine = dlib_chip_affine(torch.stack(points), 32, 0.25)
    idx = torch.tensor(frame_idx)
    assert set(pyramid_levels(affine, 32).tolist()) >= {0, 1, 2}
    got = warp_chips(frames, idx, affine, 32)
    # equal up to grid_sample's own rounding of normalised coordinates (a hundredth of a grey level)
    torch.testing.assert_close(got, _whole_frame_chips(frames, idx, affine, 32), atol=1e-2, rtol=0)
