"""facecli.ops.sample (bilinear reads from uint8 frames) against grid_sample, and the crops built on it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from facecli.ops.align import (
    _binomial_down,
    _max_level,
    chip_grid,
    dlib_chip_affine,
    pyramid_levels,
    warp_chips,
)
from facecli.ops.sample import sample_bilinear


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


def test_sample_bilinear_matches_grid_sample_inside_and_outside():
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (3, 2, 17, 23), generator=gen, dtype=torch.uint8)
    frame_idx = torch.tensor([2, 0, 1, 2])
    points = torch.rand(4, 5, 7, 2, generator=gen) * torch.tensor([30.0, 24.0]) - torch.tensor([4.0, 3.5])
    points[0, 0, 0] = torch.tensor([22.0, 16.0])  # the last pixel's centre exactly
    for padding in ("zeros", "border"):
        got = sample_bilinear(frames, frame_idx, points, padding)
        assert got.shape == (4, 2, 5, 7) and got.dtype == torch.float32
        torch.testing.assert_close(got, _grid_sample_loop(frames, frame_idx, points, padding), atol=2e-4, rtol=0)
        torch.testing.assert_close(got, sample_bilinear(frames.float(), frame_idx, points, padding))


def test_sample_bilinear_transform_runs_per_neighbour():
    frames = torch.tensor([[[[0, 100]]], [[[10, 20]]]], dtype=torch.uint8).expand(2, 3, 1, 2).contiguous()
    points = torch.tensor([[[0.25, 0.0]], [[0.5, 0.0]]])
    squares = sample_bilinear(frames, torch.tensor([0, 1]), points, "border",
                              transform=lambda v: v.float()[..., :1] ** 2)
    torch.testing.assert_close(squares, torch.tensor([[[0.75 * 0 + 0.25 * 100**2]], [[0.5 * 100 + 0.5 * 400]]]))


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
