"""--detect-every K: the geometry that places a followed face (facecli.pipeline.followed), and
FaceFollower on a real face.

The geometry is checked against plain formulas and loops; the follower runs the lite model set
(real weights) on frames of the astronaut moving, against detecting on every frame.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from facecli.pipeline.follow import FaceFollower, FollowConfig
from facecli.pipeline.followed import (
    FollowedFaces,
    cat_results,
    from_local,
    mesh_anchor,
    paired_iou,
    smooth_anchor,
    to_local,
)
from facecli.types import Detections, FaceResults


def _mesh(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 478, 3, generator=gen) * 100 + torch.rand(n, 1, 3, generator=gen) * 500


def test_mesh_anchor_matches_plain_formulas():
    mesh = _mesh(3)
    anchor = mesh_anchor(mesh)
    for i in range(3):
        pts = mesh[i, :468, :2].double()
        centre = pts.mean(0)
        rms = math.sqrt(((pts - centre) ** 2).sum(1).mean())
        eye = mesh[i, 263, :2] - mesh[i, 33, :2]
        assert torch.allclose(anchor[i, :2].double(), centre, atol=1e-3)
        assert anchor[i, 2].item() == pytest.approx(rms, rel=1e-5)
        assert anchor[i, 3].item() == pytest.approx(math.atan2(eye[1], eye[0]), abs=1e-6)
    nan = mesh.clone()
    nan[1] = float("nan")
    assert torch.isnan(mesh_anchor(nan)[1]).all() and torch.isfinite(mesh_anchor(nan)[0]).all()


def test_local_coordinates_round_trip_and_follow_a_similarity():
    gen = torch.Generator().manual_seed(1)
    points = torch.rand(4, 7, 2, generator=gen) * 300
    anchor = torch.tensor([[100.0, 50.0, 20.0, 0.3], [0.0, 0.0, 1.0, 0.0], [300.0, 200.0, 5.0, -2.5], [7.0, 9.0, 40.0, 3.1]])
    local = to_local(points, anchor)
    torch.testing.assert_close(from_local(local, anchor), points, atol=1e-3, rtol=0)
    # a rotation by +a about the anchor centre and a scale by s move the points the same way
    moved = anchor.clone()
    moved[:, 2] *= 1.5
    moved[:, 3] += 0.2
    out = from_local(local, moved)
    for n in range(4):
        c, s = math.cos(0.2), math.sin(0.2)
        rel = (points[n] - anchor[n, :2]) * 1.5
        expected = torch.stack([c * rel[:, 0] - s * rel[:, 1], s * rel[:, 0] + c * rel[:, 1]], 1) + anchor[n, :2]
        torch.testing.assert_close(out[n], expected, atol=1e-3, rtol=0)


def test_smooth_anchor_damps_jitter_and_follows_motion():
    prev = torch.tensor([[100.0, 100.0, 20.0, 0.0], [100.0, 100.0, 20.0, 3.1]])
    still = torch.tensor([[100.5, 100.0, 20.4, 0.01], [100.0, 100.0, 20.0, -3.1]])
    out = smooth_anchor(prev, still, smooth_min=0.6, gain=10.0)
    w = 0.6 + 10 * 0.5 / 20
    assert out[0, 0].item() == pytest.approx(100 + w * 0.5)
    assert out[0, 2].item() == pytest.approx(math.exp(math.log(20) + w * (math.log(20.4) - math.log(20))))
    # the angle goes the short way round (3.1 -> -3.1 is +0.083 rad, not -6.2)
    assert abs(out[1, 3].item() - 3.1) < 0.1
    fast = torch.tensor([[110.0, 100.0, 22.0, 0.2], [100.0, 100.0, 20.0, 3.1]])
    torch.testing.assert_close(smooth_anchor(prev, fast, 0.6, 10.0)[0], fast[0])  # 0.5 radius/frame: no smoothing


def test_paired_iou_matches_a_loop():
    gen = torch.Generator().manual_seed(2)
    a = torch.rand(20, 2, generator=gen) * 50
    a = torch.cat([a, a + torch.rand(20, 2, generator=gen) * 30 + 1], 1)
    b = a + torch.randn(20, 4, generator=gen) * 5
    b[:, 2:] = torch.maximum(b[:, 2:], b[:, :2] + 1)
    out = paired_iou(a, b)
    for i in range(20):
        ix = max(0.0, min(a[i, 2], b[i, 2]) - max(a[i, 0], b[i, 0]))
        iy = max(0.0, min(a[i, 3], b[i, 3]) - max(a[i, 1], b[i, 1]))
        area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
        expected = ix * iy / (area(a[i]) + area(b[i]) - ix * iy)
        assert out[i].item() == pytest.approx(float(expected), abs=1e-5)


def test_calibration_places_the_detection_back_exactly():
    mesh = _mesh(3, seed=4)
    boxes = torch.tensor([[10.0, 20.0, 110.0, 140.0], [300.0, 310.0, 380.0, 400.0], [0.0, 0.0, 50.0, 50.0]])
    keypoints = torch.rand(3, 6, 2) * 100
    mesh[2] = float("nan")  # no mesh: cannot be followed
    dets = Detections(boxes=boxes, scores=torch.tensor([0.9, 0.8, 0.7]), landmarks=keypoints, frame=torch.zeros(3, dtype=torch.long))
    faces, ok = FollowedFaces.calibrate(dets, mesh, torch.eye(3))
    assert ok.tolist() == [True, True, False] and len(faces) == 2
    placed_boxes, placed_kp = faces.proposals()
    torch.testing.assert_close(placed_boxes, boxes[:2], atol=1e-3, rtol=0)
    torch.testing.assert_close(placed_kp, keypoints[:2], atol=1e-3, rtol=0)
    state = faces.state()
    again = FollowedFaces.from_state(state, torch.device("cpu"))
    assert all(torch.equal(getattr(again, k), getattr(faces, k)) for k in ("box_local", "anchor", "score", "embedding"))


# ------------------------------------------------------------------------------ on real faces
@pytest.fixture(scope="module")
def lite():
    from facecli.models.lite import load_lite
    from facecli.models.sets import set_precision

    model_set = load_lite("cpu")
    set_precision(model_set, "fp32")
    return model_set


@pytest.fixture(scope="module")
def frames(astronaut):
    """20 frames 256x256: the astronaut drifting right and down, then 4 blank frames."""
    out = []
    for i in range(16):
        crop = astronaut[8 + i * 3 : 392 + i * 3, 40 + i * 5 : 424 + i * 5][::3, ::3][:128]
        out.append(np.kron(crop, np.ones((2, 2, 1), dtype=np.uint8)))
    out += [np.full_like(out[0], 110)] * 4
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


def _run(model_set, frames, every, batch=6, split=None, **config):
    """Results of a follower over ``frames`` in batches; with ``split``, a new follower continues
    from the first one's state_dict after that many batches (a resumed run)."""
    follower = FaceFollower(model_set, FollowConfig(every=every, **config))
    outs = []
    with torch.inference_mode():
        for k, start in enumerate(range(0, len(frames), batch)):
            if split is not None and k == split:
                state = follower.state_dict()
                follower = FaceFollower(model_set, FollowConfig(every=every, **config))
                follower.load_state_dict(state)
            outs.append(follower(frames[start : start + batch].contiguous(memory_format=torch.channels_last)))
    return outs, follower


def test_following_agrees_with_detecting_every_frame(lite, frames):
    every1, f1 = _run(lite, frames, 1)
    every4, f4 = _run(lite, frames, 4)
    assert f1.detections == len(frames)
    # frames 0, 4, 8, 12 and 16 scheduled; the face is gone at 16, and blank frames 17-19 show
    # what frame 16 showed: no face to follow, but nothing new to look for either
    assert f4.detections == 5
    assert _run(lite, frames, 4, empty_change=0)[1].detections == 8  # 0: every empty frame detected
    ious = []
    for a, b in zip(every1, every4):
        assert a.frame.tolist() == b.frame.tolist()  # the same faces in the same frames
        if len(a):
            ious.append(paired_iou(a.boxes, b.boxes))
            iod = (a.mesh[:, 263, :2] - a.mesh[:, 33, :2]).norm(dim=1)
            dev = (a.mesh[..., :2] - b.mesh[..., :2]).norm(dim=-1).mean(dim=1) / iod
            assert dev.max() < 0.05  # mean point within 5% of the inter-ocular distance
            assert (a.emotions - b.emotions).abs().max() < 0.2
    # followed boxes move smoothly; BlazeFace's own boxes jitter by a few pixels frame to frame
    ious = torch.cat(ious)
    assert ious.min() > 0.8 and ious.mean() > 0.9
    blank = every4[-1]
    assert len(blank) == 0  # the face left with the frame content: no stale face is followed


def test_follower_carries_identity_and_resumes_exactly(lite, frames):
    outs, follower = _run(lite, frames, 5)
    first = outs[0]
    assert torch.equal(first.identity[1], first.identity[0])  # carried from the detection frame 0
    resumed, other = _run(lite, frames, 5, split=2)
    assert other.detections == follower.detections
    for a, b in zip(outs, resumed):
        for name in ("frame", "boxes", "scores", "landmarks5", "mesh", "pose", "emotions", "identity"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None and y is None) or torch.equal(x, y), name


def test_empty_parts_do_not_drop_the_measurements_of_others():
    """A followed frame batched with faceless frames: feat-v2 leaves AUs, pose and identity None
    in an empty result; the followed frame's measurements must survive the concatenation."""
    full = FaceResults(frame=torch.tensor([0, 0]), boxes=torch.rand(2, 4), scores=torch.rand(2),
                       aus=torch.rand(2, 20), pose=torch.rand(2, 6), identity=torch.rand(2, 512))
    empty = FaceResults(frame=torch.zeros(0, dtype=torch.long), boxes=torch.zeros(0, 4), scores=torch.zeros(0))
    joined = cat_results([full, empty, empty])
    assert torch.equal(joined.aus, full.aus) and torch.equal(joined.pose, full.pose)
    assert torch.equal(joined.identity, full.identity) and joined.mesh is None
    assert len(cat_results([empty, empty])) == 0


def test_max_faces_skips_scheduled_detections_while_the_house_is_full(lite, frames):
    """--max-faces 1: the one face is followed without scheduled detections (MediaPipe's
    max_num_faces); the detector runs again when it is lost, then on every blank frame."""
    import functools

    from facecli.pipeline.process import detect

    every1, _ = _run(lite, frames, 1)
    follower = FaceFollower(lite, FollowConfig(every=4, max_faces=1), functools.partial(detect, lite, max_faces=1))
    with torch.inference_mode():
        outs = [follower(frames[s : s + 6].contiguous(memory_format=torch.channels_last)) for s in range(0, 20, 6)]
    assert follower.detections == 1 + 1  # frame 0; then the face is lost on blank frame 16 (17-19 unchanged)
    for a, b in zip(every1, outs):
        assert a.frame.tolist() == b.frame.tolist()
        if len(a):
            assert paired_iou(a.boxes, b.boxes).min() > 0.8
            iod = (a.mesh[:, 263, :2] - a.mesh[:, 33, :2]).norm(dim=1)
            assert ((a.mesh[..., :2] - b.mesh[..., :2]).norm(dim=-1).mean(dim=1) / iod).max() < 0.05


def test_lite_locates_frame_by_frame_and_completes_in_one_call(lite, frames):
    """What the follower does with lite: locate per frame, complete the batch at once, equals analyze."""
    batch = frames[:6].contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        dets = lite.detect(batch)
        whole = lite.analyze(batch, dets)
        parts = []
        for f in range(6):
            rows = (dets.frame == f).nonzero()[:, 0]
            mine = dets.take(rows)
            one = lite.locate(batch[f : f + 1], dataclasses.replace(mine, frame=torch.zeros_like(mine.frame)))
            parts.append(dataclasses.replace(one, frame=torch.full((len(rows),), f)))
        located = cat_results(parts)
        assert torch.isnan(located.mesh[:, 468:]).all() and located.pose is None
        done = lite.complete(batch, located, identity=True)
    assert len(whole) == 6
    for name in ("frame", "boxes", "scores", "landmarks5"):
        assert torch.equal(getattr(done, name), getattr(whole, name)), name
    for name in ("mesh", "pose", "emotions", "identity"):
        torch.testing.assert_close(getattr(done, name), getattr(whole, name), rtol=1e-4, atol=1e-3)


def test_max_faces_keeps_the_schedule_for_a_model_set_without_locate(lite, frames):
    """A set whose analyze is one piece (feat-v2) keeps every Kth detection with --max-faces:
    each one starts a run of frames measured side by side."""
    import functools

    from facecli.pipeline.process import detect

    class Whole:  # lite without its locate/complete split
        device, info = lite.device, lite.info
        detect, analyze = lite.detect, lite.analyze

    follower = FaceFollower(Whole(), FollowConfig(every=4, max_faces=1), functools.partial(detect, Whole(), max_faces=1))
    with torch.inference_mode():
        for s in range(0, 20, 6):
            follower(frames[s : s + 6].contiguous(memory_format=torch.channels_last))
    assert follower.detections == 5  # frames 0, 4, 8, 12 and 16 (blank frames 17-19 unchanged)


def test_an_empty_scene_is_searched_when_its_picture_changes(lite, frames):
    """No face followed: detect where the picture changed since the last full detection, and on
    every Kth frame; a face entering between scheduled frames is found at once. The reference
    picture travels with the checkpoint, so a resumed run detects the same frames."""
    blank = frames[-1:].expand(9, -1, -1, -1)
    clip = torch.cat([blank, frames[:7]])  # the face appears on frame 9
    every1, _ = _run(lite, clip, 1, batch=4)
    gated, follower = _run(lite, clip, 8, batch=4)
    assert follower.detections == 3  # frame 0 (the start), 8 (scheduled) and 9 (changed); 1-7 unchanged
    resumed, other = _run(lite, clip, 8, batch=4, split=1)  # resumed after frames 0-3, in the empty stretch
    assert other.detections == 3
    always, eager = _run(lite, clip, 8, batch=4, empty_change=0)
    assert eager.detections == 10  # frames 0-9
    found = [r.frame.tolist() for r in every1]
    assert found == [[], [], [1, 2, 3], [0, 1, 2, 3]]  # one face on each of frames 9-15, batches of 4
    for run in (gated, resumed, always):
        assert [r.frame.tolist() for r in run] == found
        for a, b in zip(every1[2:], run[2:]):
            assert paired_iou(a.boxes, b.boxes).min() > 0.8
    for a, b in zip(gated[2:], resumed[2:]):
        assert torch.equal(a.boxes, b.boxes) and torch.equal(a.mesh, b.mesh)
