"""Tiled BlazeFace detection: the scan plan's geometry, the window sampler, part suppression, borders."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facecli.models.lite.blazeface import anchor_pixels, generate_anchors, letterbox, load_blazeface
from facecli.models.lite.tiling import (
    MAX_SCAN_PIXELS,
    OVERLAP,
    SCAN_FACE,
    TiledDetector,
    drop_parts,
    plan_scan,
    sample_windows,
)
from tests.support.faces import background, face_patch, match, paste, skimage_faces

SIZES = [(128, 160), (276, 730), (512, 512), (720, 1280), (1080, 1920), (2160, 3840), (8000, 8000), (3000, 200)]


@pytest.fixture(scope="module")
def tiled() -> TiledDetector:
    return TiledDetector(load_blazeface("short"))


def _frame(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].contiguous()


def test_anchor_pixels_generalise_the_square_anchors():
    for size, strides, per_cell in ((128, (8, 16, 16, 16), 2), (192, (4,), 1)):
        square = anchor_pixels(size, size, strides, per_cell) / size
        assert torch.allclose(square, generate_anchors(size, strides, per_cell))
    wide = anchor_pixels(32, 64, (8, 16, 16, 16), 2)
    assert wide.shape == (4 * 8 * 2 + 2 * 4 * 6, 2)
    assert wide[:2].tolist() == [[4.0, 4.0], [4.0, 4.0]] and wide[2].tolist() == [12.0, 4.0]
    assert wide[64].tolist() == [8.0, 8.0] and wide[-1].tolist() == [56.0, 24.0]


@pytest.mark.parametrize("height, width", SIZES)
def test_plan_covers_every_face_size_once_and_every_place(height, width):
    levels = plan_scan(height, width, min_face=24)
    long_side = max(height, width)
    # sizes: the finest level keeps every small face, the letterbox every large one, no gap between
    assert levels[0].min_face == 0 and levels[-1].max_face == math.inf
    for finer, coarser in zip(levels[:-1], levels[1:]):
        assert coarser.min_face < finer.max_face and finer.scale > coarser.scale
    # the last level is MediaPipe's letterbox: one 128 x 128 window over the centred square
    last = levels[-1]
    assert last.size == (128, 128) and last.scale == pytest.approx(128 / long_side)
    assert last.origins.tolist() == [[(width - long_side) / 2, (height - long_side) / 2]]
    # the finest level reads the frame at 24 / min_face, unless the frame is too large for that
    assert levels[0].scale == pytest.approx(min(1.0, math.sqrt(MAX_SCAN_PIXELS / (height * width))))
    for level in levels[:-1]:
        h, w = level.size
        assert h % 16 == 0 and w % 16 == 0 and max(h, w) <= 768
        assert level.max_face * level.scale <= OVERLAP  # a kept face fits in the overlap
        assert level.min_face * level.scale <= SCAN_FACE  # ... and is large enough to be found
        # windows: each core, grown by half the largest kept face, lies inside its window
        # (where the core reaches the frame's edge, the window reaches it too)
        half = level.max_face / 2
        for (ox, oy), (x1, y1, x2, y2) in zip(level.origins.tolist(), level.cores.tolist()):
            ex, ey = ox + w / level.scale, oy + h / level.scale
            assert ox <= max(x1 - half, 0.0) + 1e-6 and oy <= max(y1 - half, 0.0) + 1e-6
            assert ex >= min(x2 + half, width) - 1e-6 and ey >= min(y2 + half, height) - 1e-6
        # cores tile the plane: every point of the frame lies in exactly one
        xs = torch.linspace(-0.5, width - 0.5, 57, dtype=torch.float64)
        ys = torch.linspace(-0.5, height - 0.5, 43, dtype=torch.float64)
        px, py = torch.meshgrid(xs, ys, indexing="ij")
        c = level.cores
        inside = ((px[..., None] >= c[:, 0]) & (px[..., None] < c[:, 2])
                  & (py[..., None] >= c[:, 1]) & (py[..., None] < c[:, 3]))  # fmt: skip
        assert (inside.sum(-1) == 1).all()


def test_plan_bounds_the_work_of_huge_frames():
    small = sum(l.origins.shape[0] * l.size[0] * l.size[1] for l in plan_scan(1080, 1920))
    huge = plan_scan(8000, 8000)
    pixels = sum(l.origins.shape[0] * l.size[0] * l.size[1] for l in huge)
    assert pixels < 2 * MAX_SCAN_PIXELS and small < pixels
    # the astronaut's face pasted into 8000 x 8000 (95 pixels) is still in the finest level's range
    assert 95 * huge[0].scale >= 0.9 * SCAN_FACE
    # min_face moves the finest level; a smaller face than the network can see means enlarging
    assert plan_scan(720, 1280, min_face=48)[0].scale == pytest.approx(0.5)
    assert plan_scan(720, 1280, min_face=12)[0].scale == pytest.approx(2.0)


def test_sample_windows_is_mediapipe_letterbox_on_the_letterbox_window(astronaut):
    frames = _frame(astronaut[:300])  # 300 x 512: a letterbox with black bands
    last = plan_scan(300, 512)[-1]
    got = sample_windows(frames, torch.zeros(1, dtype=torch.long), last.origins, last.scale, last.size)
    expected, _, _ = letterbox(frames, 128)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("channels_last", [False, True])
def test_sample_windows_matches_a_plain_loop(channels_last):
    """Shrinking (0.2: each window row reads its two source rows; 0.45), enlarging (1.7: the band
    of rows), scale 1 off the pixel grid, and scale 1 on it (a plain copy, windows reaching past
    the frame black), from NCHW and from channels-last frames."""
    gen = torch.Generator().manual_seed(3)
    frames = torch.randint(0, 256, (2, 3, 23, 31), generator=gen, dtype=torch.uint8)
    if channels_last:
        frames = frames.contiguous(memory_format=torch.channels_last)
    frame_idx = torch.tensor([1, 0, 1])
    off_grid = torch.tensor([[-4.25, 3.5], [20.0, -2.0], [7.0, 9.0]], dtype=torch.float64)
    on_grid = torch.tensor([[-4.0, 3.0], [25.0, -2.0], [7.0, 9.0]], dtype=torch.float64)
    for origins, scale in ((off_grid, 0.2), (off_grid, 0.45), (off_grid, 1.0), (off_grid, 1.7), (on_grid, 1.0)):
        got = sample_windows(frames, frame_idx, origins, scale, (6, 10))
        assert got.shape == (3, 3, 6, 10) and got.is_contiguous(memory_format=torch.channels_last)
        for k in range(3):
            f = frames[frame_idx[k]].double()
            for i in range(6):
                for j in range(10):
                    x = round((origins[k, 0].item() + j / scale) * 32) / 32
                    y = round((origins[k, 1].item() + i / scale) * 32) / 32
                    x0, y0 = math.floor(x), math.floor(y)
                    value = torch.zeros(3, dtype=torch.float64)
                    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                            if 0 <= yy < 23 and 0 <= xx < 31:
                                value += wx * wy * f[:, yy, xx]
                    expected = torch.floor(value + 0.5) / 127.5 - 1
                    torch.testing.assert_close(got[k, :, i, j].double(), expected, atol=1e-6, rtol=0)


def test_drop_parts_hand_table():
    boxes = torch.tensor([
        [100.0, 100.0, 200.0, 200.0],  # a face
        [180.0, 95.0, 210.0, 125.0],   # an eye and brow at its corner, partly outside its box: a part
        [300.0, 100.0, 340.0, 140.0],  # a small face beside it, away from it: kept
        [120.0, 120.0, 175.0, 175.0],  # inside, but more than half the face's size: kept
        [130.0, 130.0, 150.0, 150.0],  # inside, small, but scores higher than the face: kept
    ])  # fmt: skip
    scores = torch.tensor([0.95, 0.7, 0.8, 0.75, 0.97])
    assert drop_parts(boxes, scores).tolist() == [True, False, True, True, True]
    assert drop_parts(boxes[:1], scores[:1]).tolist() == [True]


def test_face_on_a_window_border_is_found_once(tiled):
    """A face centred on the cut between two windows of the finest level: one box, where it is."""
    height, width = 720, 1280
    level = tiled.plan(height, width)[0]
    cut = level.cores[0, 2].item()  # the first window's core ends here; the second's begins
    assert math.isfinite(cut)
    frame = background(height, width, "coffee")
    truth = []
    for i, face in enumerate(skimage_faces()[:3]):
        size = 40 + 15 * i
        patch = face_patch(face, size)
        x, y = round(cut - patch.shape[1] / 2), 60 + 220 * i
        truth.append(paste(frame, patch, x, y, size))
    found = tiled.detect(_frame(frame))
    hits, duplicates, strays = match(found.boxes.numpy(), np.array(truth))
    assert hits.tolist() == [1, 1, 1] and duplicates == 0 and strays == 0


def test_batch_equals_single_frames(tiled, astronaut):
    frames = torch.cat([_frame(astronaut), _frame(astronaut[:, ::-1])])
    both = tiled.detect(frames)
    for i in range(2):
        one = tiled.detect(frames[i : i + 1])
        mine = both.frame == i
        torch.testing.assert_close(both.boxes[mine], one.boxes)
        torch.testing.assert_close(both.scores[mine], one.scores)
    assert both.frame.tolist() == sorted(both.frame.tolist())
