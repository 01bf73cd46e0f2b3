"""Crop geometry: vectorised chips against a plain per-pixel loop, and the map back to the frame."""

import math

import torch

from facecli.ops.crops import chip_sample_points, crop_square_pad, resize_longest, square_pad_geometry


def _bilinear_reflect(img: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Plain bilinear sample of img [C, H, W] at pixel-index (x, y), reflecting about the frame edges."""
    c, h, w = img.shape

    def reflect(v: float, n: int) -> float:
        # grid_sample(reflection, align_corners=False) reflects about -0.5 and n - 0.5
        lo, span = -0.5, float(n)
        v = abs(v - lo) % (2 * span)
        v = 2 * span - v if v > span else v
        return v + lo

    x, y = reflect(x, w), reflect(y, h)
    x0, y0 = math.floor(x), math.floor(y)
    out = torch.zeros(c)
    for dy in (0, 1):
        for dx in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            wt = (1 - abs(x - xi)) * (1 - abs(y - yi))
            if 0 <= xi < w and 0 <= yi < h and wt > 0:
                out += wt * img[:, yi, xi]
    return out


def test_square_pad_geometry_hand_worked():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 0.2, 0.1]])
    origin, side = square_pad_geometry(boxes, expand=1.2)
    # box 1: 40 x 80 -> side 96 centred on (30, 60)
    assert torch.allclose(side, torch.tensor([96.0, 1.0]))
    assert torch.allclose(origin[0], torch.tensor([30 - 48.0, 60 - 48.0]))
    assert torch.allclose(origin[1], torch.tensor([0.1 - 0.5, 0.05 - 0.5]))


def test_chip_matches_plain_loop_including_off_frame():
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (2, 3, 23, 31), generator=g, dtype=torch.uint8)
    boxes = torch.tensor([[3.0, 4.0, 15.0, 12.0], [-6.0, 10.0, 12.0, 30.0], [20.0, 1.0, 29.0, 9.5]])
    frame_idx = torch.tensor([0, 0, 1])
    size = 8
    chips = crop_square_pad(frames, boxes, frame_idx, size=size, expand=1.2)
    unit = frames.float() / 255
    for n in range(3):
        ox, oy = chips.origin[n].tolist()
        side = chips.side[n].item()
        for i in range(size):
            for j in range(size):
                x = ox + (j + 0.5) / size * side
                y = oy + (i + 0.5) / size * side
                want = _bilinear_reflect(unit[frame_idx[n]], x, y)
                assert torch.allclose(chips.pixels[n, :, i, j], want, atol=1e-5), (n, i, j)


def test_map_back_round_trip():
    """A frame point sampled into the chip maps back to where it came from."""
    boxes = torch.tensor([[40.0, 30.0, 90.0, 100.0]])
    origin, side = square_pad_geometry(boxes)
    pts = chip_sample_points(origin, side, 16)  # [1, 16, 16, 2] frame coords of chip pixels
    chips = crop_square_pad(torch.zeros(1, 3, 120, 120), boxes, torch.tensor([0]), size=16)
    i, j = 5, 11
    uv = torch.tensor([[[(j + 0.5) / 16, (i + 0.5) / 16]]])
    assert torch.allclose(chips.to_frame(uv)[0, 0], pts[0, i, j], atol=1e-5)
    assert torch.allclose(chips.boxes, torch.cat([origin, origin + side[:, None]], 1))


def test_empty_and_resize():
    chips = crop_square_pad(torch.zeros(1, 3, 10, 10), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert chips.pixels.shape == (0, 3, 256, 256)
    frames = torch.zeros(1, 3, 100, 400, dtype=torch.uint8)
    small, scale = resize_longest(frames, 200)
    assert small.shape[-2:] == (50, 200) and scale == 0.5
    same, one = resize_longest(frames, 800)
    assert same.shape[-2:] == (100, 400) and one == 1.0


def test_resize_uint8_is_the_float_resize_rounded():
    from skimage import data

    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None]  # [1, 3, 512, 512] uint8
    for frames in (photo, photo.contiguous(memory_format=torch.channels_last)):
        small, scale = resize_longest(frames, 200)
        exact, _ = resize_longest(frames.float(), 200)
        assert small.dtype == torch.float32 and small.shape == exact.shape and scale == 200 / 512
        assert (small - exact).abs().max() <= 1.0  # whole levels, as a stored smaller image
        assert torch.equal(small, small.round())
