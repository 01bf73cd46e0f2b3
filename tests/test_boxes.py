"""facecli.ops.boxes: priors, decoders and detection selection against plain loops and hand-worked cases."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import box_iou

from facecli.ops.boxes import (
    decode_boxes,
    decode_landmarks,
    encode_boxes,
    retinaface_priors,
    select_detections,
)

MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)


def _priors_loop(height: int, width: int) -> list[list[float]]:
    rows = []
    for sizes, step in zip(MIN_SIZES, STEPS):
        for i in range(math.ceil(height / step)):
            for j in range(math.ceil(width / step)):
                for s in sizes:
                    rows.append([(j + 0.5) * step / width, (i + 0.5) * step / height, s / width, s / height])
    return rows


@pytest.mark.parametrize("height,width", [(64, 64), (217, 301), (33, 7), (720, 1280)])
def test_priors_match_loop(height: int, width: int) -> None:
    priors = retinaface_priors(height, width)
    expected = torch.tensor(_priors_loop(height, width), dtype=torch.float32)
    assert priors.dtype == torch.float32
    assert torch.equal(priors, expected)


def test_priors_hand_worked() -> None:
    # 16 x 24 input: level 0 is a 2 x 3 grid of stride 8, levels 1 and 2 a 1 x 2 and a 1 x 1 grid.
    priors = retinaface_priors(16, 24)
    assert priors.shape == ((2 * 3 + 1 * 2 + 1 * 1) * 2, 4)
    # level 0, row 0, col 0: centre (4, 4) px, sides 16 then 32 px
    assert priors[0].tolist() == pytest.approx([4 / 24, 4 / 16, 16 / 24, 16 / 16])
    assert priors[1].tolist() == pytest.approx([4 / 24, 4 / 16, 32 / 24, 32 / 16])
    # level 0, row 0, col 1 comes next (columns before rows), then row 1
    assert priors[2, :2].tolist() == pytest.approx([12 / 24, 4 / 16])
    assert priors[6, :2].tolist() == pytest.approx([4 / 24, 12 / 16])
    # level 1 starts after 12 anchors: stride 16, second column centre at 24 px (outside: no clip)
    assert priors[12].tolist() == pytest.approx([8 / 24, 8 / 16, 64 / 24, 64 / 16])
    assert priors[14, 0].item() == pytest.approx(24 / 24)
    # level 2: one cell centred at (16, 16) px
    assert priors[-1].tolist() == pytest.approx([16 / 24, 16 / 16, 512 / 24, 512 / 16])


def test_priors_count_1080p() -> None:
    n = sum(2 * math.ceil(1080 / s) * math.ceil(1920 / s) for s in STEPS)
    assert retinaface_priors(1080, 1920).shape == (n, 4) == (85200, 4)


def test_decode_boxes_matches_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    priors = retinaface_priors(40, 56)
    loc = torch.randn(3, priors.shape[0], 4, generator=gen)
    boxes = decode_boxes(loc, priors, (0.1, 0.2))
    for b in range(3):
        for p in range(0, priors.shape[0], 7):
            cx, cy, w, h = priors[p].tolist()
            dx, dy, dw, dh = loc[b, p].tolist()
            ccx, ccy = cx + dx * 0.1 * w, cy + dy * 0.1 * h
            bw, bh = w * math.exp(dw * 0.2), h * math.exp(dh * 0.2)
            expected = [ccx - bw / 2, ccy - bh / 2, ccx + bw / 2, ccy + bh / 2]
            assert boxes[b, p].tolist() == pytest.approx(expected, abs=1e-6)


def test_decode_boxes_zero_deltas_give_prior_box() -> None:
    priors = torch.tensor([[0.5, 0.25, 0.2, 0.1]])
    boxes = decode_boxes(torch.zeros(1, 4), priors)
    assert boxes[0].tolist() == pytest.approx([0.4, 0.2, 0.6, 0.3])


def test_decode_landmarks_matches_loop() -> None:
    gen = torch.Generator().manual_seed(1)
    priors = retinaface_priors(32, 32)
    pre = torch.randn(2, priors.shape[0], 10, generator=gen)
    points = decode_landmarks(pre, priors, (0.1, 0.2))
    assert points.shape == (2, priors.shape[0], 5, 2)
    for b in range(2):
        for p in range(0, priors.shape[0], 5):
            cx, cy, w, h = priors[p].tolist()
            for k in range(5):
                x = cx + pre[b, p, 2 * k].item() * 0.1 * w
                y = cy + pre[b, p, 2 * k + 1].item() * 0.1 * h
                assert points[b, p, k].tolist() == pytest.approx([x, y], abs=1e-6)


def test_encode_decode_round_trip() -> None:
    gen = torch.Generator().manual_seed(2)
    priors = retinaface_priors(48, 64)
    loc = torch.randn(2, priors.shape[0], 4, generator=gen)
    assert torch.allclose(encode_boxes(decode_boxes(loc, priors), priors), loc, atol=1e-4)


def _select_loop(boxes, scores, threshold, floor, top_k, iou, cap):
    """Plain reference: per image, score floor, NMS, threshold, cap (top_k not reached here)."""
    out = []
    for b in range(scores.shape[0]):
        idx = sorted((p for p in range(scores.shape[1]) if scores[b, p] > floor), key=lambda p: -scores[b, p])
        kept: list[int] = []
        for p in idx:
            if all(box_iou(boxes[b, p][None], boxes[b, q][None]).item() <= iou for q in kept):
                kept.append(p)
        kept = [p for p in kept if scores[b, p] >= threshold][:cap]
        out += [(b, p) for p in kept]
    return out


def test_select_detections_matches_loop() -> None:
    gen = torch.Generator().manual_seed(3)
    centres = torch.rand(3, 60, 2, generator=gen) * 100
    sides = 10 + torch.rand(3, 60, 2, generator=gen) * 30
    boxes = torch.cat([centres - sides / 2, centres + sides / 2], dim=-1)
    scores = torch.rand(3, 60, generator=gen)
    frame, anchor = select_detections(boxes, scores, threshold=0.5, iou_threshold=0.4, max_per_image=4)
    expected = _select_loop(boxes, scores, 0.5, 0.02, 5000, 0.4, 4)
    assert list(zip(frame.tolist(), anchor.tolist())) == expected
    assert frame.dtype == torch.int64


def test_select_detections_hand_worked() -> None:
    # image 0: two boxes with IoU 81/100 -> the weaker is suppressed; a distant one is below threshold
    # image 1: two disjoint boxes, kept best first; a third below the score floor
    boxes = torch.tensor(
        [
            [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]],
            [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]],
        ],
        dtype=torch.float32,
    )
    scores = torch.tensor([[0.6, 0.9, 0.3], [0.7, 0.8, 0.01]])
    frame, anchor = select_detections(boxes, scores, threshold=0.5)
    assert frame.tolist() == [0, 1, 1]
    assert anchor.tolist() == [1, 1, 0]
    frame, anchor = select_detections(boxes, scores, threshold=0.25)
    assert list(zip(frame.tolist(), anchor.tolist())) == [(0, 1), (0, 2), (1, 1), (1, 0)]


def test_select_detections_top_k_is_batch_wide() -> None:
    # top_k = 1 per image keeps the 2 best candidates of the whole batch, both from image 0
    boxes = torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30]], dtype=torch.float32).expand(2, 2, 4)
    scores = torch.tensor([[0.9, 0.8], [0.7, 0.6]])
    frame, anchor = select_detections(boxes, scores, top_k=1)
    assert frame.tolist() == [0, 0] and anchor.tolist() == [0, 1]


def test_select_detections_empty() -> None:
    frame, anchor = select_detections(torch.zeros(2, 5, 4), torch.zeros(2, 5))
    assert frame.shape == anchor.shape == (0,)


def test_best_per_frame_hand_worked() -> None:
    from facecli.ops.boxes import best_per_frame

    frame = torch.tensor([0, 0, 0, 1, 3, 3])
    scores = torch.tensor([0.6, 0.9, 0.7, 0.5, 0.8, 0.8])
    assert best_per_frame(frame, scores, 1).tolist() == [1, 3, 4]  # a tie keeps the earlier row
    assert best_per_frame(frame, scores, 2).tolist() == [1, 2, 3, 4, 5]
    assert best_per_frame(frame, scores, 5).tolist() == list(range(6))
    assert best_per_frame(torch.zeros(0, dtype=torch.long), torch.zeros(0), 1).tolist() == []
