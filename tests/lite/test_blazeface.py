"""BlazeFace (lite set) with the packaged weights on real faces, plus its pure geometry functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from facecli.models.lite.blazeface import (
    BlazeFace,
    _depth_to_space_rows,
    generate_anchors,
    load_blazeface,
    weighted_nms,
)

# Astronaut's face, checked by eye on a drawing of the image: forehead to chin, ear to ear.
ASTRONAUT_FACE = torch.tensor([175.0, 80.0, 275.0, 180.0])
VARIANTS = ["short", "full"]


def _frames(*images: np.ndarray) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1) for im in images])


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    lt, rb = torch.maximum(a[:2], b[:2]), torch.minimum(a[2:], b[2:])
    inter = (rb - lt).clamp(min=0).prod()
    return float(inter / ((a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter))


@pytest.fixture(scope="module", params=VARIANTS)
def detector(request):
    torch.manual_seed(0)
    return load_blazeface(request.param)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def camera_rgb() -> np.ndarray:
    return np.repeat(data.camera()[..., None], 3, axis=2)


def test_anchor_counts_and_centres():
    short = generate_anchors(128, (8, 16, 16, 16), 2)
    full = generate_anchors(192, (4,), 1)
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    # short: 16x16 cells x 2, then 8x8 cells x 6; row-major cells, x fastest
    assert torch.allclose(short[0], torch.tensor([0.5 / 16, 0.5 / 16])) and torch.equal(short[0], short[1])
    assert torch.allclose(short[2], torch.tensor([1.5 / 16, 0.5 / 16]))
    assert torch.allclose(short[512], torch.tensor([0.5 / 8, 0.5 / 8])) and torch.equal(short[512], short[517])
    assert torch.allclose(short[-1], torch.tensor([7.5 / 8, 7.5 / 8]))
    assert torch.allclose(full[48], torch.tensor([0.5 / 48, 1.5 / 48]))


@pytest.mark.parametrize("variant,size,anchors", [("short", 128, 896), ("full", 192, 2304)])
def test_network_output_shapes(variant, size, anchors):
    model = BlazeFace(variant).eval()
    regressors, logits = model(torch.zeros(2, 3, size, size))
    assert regressors.shape == (2, anchors, 16) and logits.shape == (2, anchors)
    assert model.anchors.shape == (anchors, 2)


def test_depth_to_space_rows_matches_loop():
    x = torch.randn(2, 4 * 3, 5, 6)  # block 2, 3 output channels
    out = _depth_to_space_rows(x, 2)
    ref = torch.empty(2, 10, 12, 3)
    for h in range(5):
        for w in range(6):
            for i in range(2):
                for j in range(2):
                    ref[:, 2 * h + i, 2 * w + j, :] = x[:, (i * 2 + j) * 3 : (i * 2 + j + 1) * 3, h, w]
    assert torch.equal(out, ref.reshape(2, -1, 3))


def _weighted_nms_loop(boxes, scores, points, threshold):
    """MediaPipe's algorithm written plainly over Python lists."""
    boxes, scores, points = boxes.tolist(), scores.tolist(), points.tolist()
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    out = []
    while order:
        top = order[0]
        members, rest = [], []
        for i in order:
            ix = max(0.0, min(boxes[i][2], boxes[top][2]) - max(boxes[i][0], boxes[top][0]))
            iy = max(0.0, min(boxes[i][3], boxes[top][3]) - max(boxes[i][1], boxes[top][1]))
            area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
            union = area(boxes[i]) + area(boxes[top]) - ix * iy
            (members if union > 0 and ix * iy / union > threshold else rest).append(i)
        total = sum(scores[i] for i in members)
        box = [sum(boxes[i][c] * scores[i] for i in members) / total for c in range(4)]
        pts = [[sum(points[i][k][c] * scores[i] for i in members) / total for c in range(2)] for k in range(len(points[0]))]
        out.append((box, scores[top], pts))
        order = rest
    return out


def test_weighted_nms_matches_plain_loop():
    gen = torch.Generator().manual_seed(3)
    centres = torch.rand(6, 2, generator=gen) * 0.8 + 0.1
    jitter = torch.randn(60, 2, generator=gen) * 0.02
    c = centres.repeat(10, 1) + jitter
    half = (torch.rand(60, 1, generator=gen) * 0.05 + 0.05).expand(-1, 2)
    boxes = torch.cat([c - half, c + half], 1)
    scores = torch.rand(60, generator=gen) * 0.5 + 0.5
    points = torch.rand(60, 6, 2, generator=gen)
    b, s, p = weighted_nms(boxes, scores, points, 0.3)
    ref = _weighted_nms_loop(boxes, scores, points, 0.3)
    assert len(s) == len(ref) and 1 < len(ref) < 60
    for i, (rb, rs, rp) in enumerate(ref):
        assert torch.allclose(b[i], torch.tensor(rb), atol=1e-5)
        assert float(s[i]) == pytest.approx(rs)
        assert torch.allclose(p[i], torch.tensor(rp), atol=1e-5)


def test_astronaut_one_face(detector, astronaut):
    det = detector.detect(_frames(astronaut))
    assert len(det) == 1
    assert float(det.scores[0]) > 0.7
    assert _iou(det.boxes[0], ASTRONAUT_FACE) > 0.7
    eyes, nose, mouth = det.landmarks[0, :2], det.landmarks[0, 2], det.landmarks[0, 3]
    box = det.boxes[0]
    assert ((det.landmarks[0, :4] > box[:2]) & (det.landmarks[0, :4] < box[2:])).all()
    assert eyes[0, 0] < nose[0] < eyes[1, 0]  # subject's right eye is on the image's left
    assert eyes[:, 1].max() < nose[1] < mouth[1]
    assert det.landmarks[0, 4, 0] < eyes[0, 0] and det.landmarks[0, 5, 0] > eyes[1, 0]  # ears outside eyes


def test_camera_grey_as_rgb(detector, camera_rgb):
    det = detector.detect(_frames(camera_rgb))
    assert len(det) == 1 and float(det.scores[0]) > 0.6
    cx, cy = ((det.boxes[0, :2] + det.boxes[0, 2:]) / 2).tolist()
    assert 200 < cx < 260 and 140 < cy < 190  # the man's face, left of the camera
    assert 60 < float(det.boxes[0, 2] - det.boxes[0, 0]) < 120


@pytest.mark.parametrize("value", [0, 128, 255])
def test_blank_frame_has_no_face(detector, value):
    det = detector.detect(torch.full((1, 3, 240, 320), value, dtype=torch.uint8))
    assert len(det) == 0 and det.landmarks.shape == (0, 6, 2) and det.frame.dtype == torch.long


def test_non_square_frame_maps_back_to_pixels(detector, astronaut):
    # A 512x512 image whose top and bottom 56 rows are black letterboxes to the same network input
    # as its 400-row middle, so the crop's face must come back 56 px higher (float noise aside).
    banded = astronaut.copy()
    banded[:56] = 0
    banded[456:] = 0
    det = detector.detect(_frames(banded[56:456]))
    full = detector.detect(_frames(banded))
    assert len(det) == 1
    shift = torch.tensor([0.0, 56.0])
    assert torch.allclose(det.boxes[0] + shift.repeat(2), full.boxes[0], atol=0.05)
    assert torch.allclose(det.landmarks[0] + shift, full.landmarks[0], atol=0.05)


def test_wide_frame_keeps_face_location(detector, astronaut):
    canvas = np.zeros((480, 640, 3), np.uint8)
    canvas[:, 100:612] = astronaut[:480]
    det = detector.detect(_frames(canvas))
    assert len(det) == 1
    assert _iou(det.boxes[0], ASTRONAUT_FACE + torch.tensor([100.0, 0.0, 100.0, 0.0])) > 0.7


def test_batch_equals_single_frames(detector, astronaut, camera_rgb):
    frames = _frames(camera_rgb, np.zeros_like(astronaut), astronaut)
    batched = detector.detect(frames)
    assert batched.frame.tolist() == [0, 2]
    for i in (0, 2):
        single = detector.detect(frames[i : i + 1])
        sel = batched.frame == i
        assert torch.allclose(batched.boxes[sel], single.boxes, atol=1e-3)
        assert torch.allclose(batched.scores[sel], single.scores, atol=1e-5)
        assert torch.allclose(batched.landmarks[sel], single.landmarks, atol=1e-3)


def test_threshold_and_unknown_variant(detector, astronaut):
    assert len(detector.detect(_frames(astronaut), threshold=0.999)) == 0
    with pytest.raises(ValueError, match="variant"):
        BlazeFace("medium")
