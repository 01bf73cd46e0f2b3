"""Face tracking: shot-change histograms against loops, the tracker on hand-made boxes, and on a
video composed from real faces with the lite model set (IDF1, HOTA and ID switches reported)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from facecli.models.lite import APPEARANCE_GATE, LINKAGE_THRESHOLD
from facecli.identity.shots import (
    CELL,
    colour_histograms,
    histogram_distance,
    picture_changed,
    shot_changes,
    thumbnails,
)
from facecli.identity.tracking import FaceTracker, TrackerConfig, box_iou
from facecli.identity.tracks import TrackAccumulator, track_identities
from tests.support.mot_eval import _iou
from tests.support.tracking_scene import CUT, compose


def test_histograms_match_a_loop():
    rng = np.random.default_rng(0)
    frames = torch.from_numpy(rng.integers(0, 256, size=(3, 3, 20, 30), dtype=np.uint8))
    h = colour_histograms(frames, bins=8)
    assert h.shape == (3, 3, 8)
    for b in range(3):
        for c in range(3):
            want = np.histogram(frames[b, c].numpy(), bins=8, range=(0, 256))[0] / 600
            assert np.allclose(h[b, c].numpy(), want)
    d = histogram_distance(h[0], h[1])
    want = 1 - np.mean([np.minimum(h[0, c].numpy(), h[1, c].numpy()).sum() for c in range(3)])
    assert abs(float(d) - want) < 1e-6


def test_shot_changes_flags_cuts_not_motion():
    a = np.zeros((3, 40, 40), dtype=np.uint8)
    a[0] = 200
    moved = np.roll(a, 5, axis=2).copy()
    moved[:, :, :5] = 30  # a small part of the picture changes
    other = np.full((3, 40, 40), 90, dtype=np.uint8)
    frames = torch.from_numpy(np.stack([a, moved, other, other]))
    hist = colour_histograms(frames)
    assert shot_changes(hist, None, 0.5).tolist() == [False, False, True, False]
    assert shot_changes(hist[2:], hist[1], 0.5).tolist() == [True, False]
    assert shot_changes(hist[:0], None, 0.5).shape == (0,)


def test_thumbnails_match_a_loop():
    rng = np.random.default_rng(1)
    frames = torch.from_numpy(rng.integers(0, 256, size=(2, 3, 37, 50), dtype=np.uint8))
    thumbs = thumbnails(frames.contiguous(memory_format=torch.channels_last))
    assert thumbs.shape == (2, 37 // CELL, 50 // CELL) and thumbs.dtype == torch.float32
    green = frames[:, 1].numpy().astype(np.float64)
    for b in range(2):
        for i in range(37 // CELL):
            for j in range(50 // CELL):
                cell = green[b, i * CELL : (i + 1) * CELL : 2, j * CELL : (j + 1) * CELL : 2]
                assert abs(thumbs[b, i, j].item() - cell.mean()) < 1e-4


def test_picture_changed_sees_a_small_face_and_not_noise(astronaut):
    """A 24-pixel face (the smallest the detectors look for) pasted anywhere on a noisy still
    scene is a change at the followers' threshold (8 levels); noise of the same scene is not."""
    rng = np.random.default_rng(2)
    scene = np.full((3, 360, 640), 120.0) + np.linspace(-40, 40, 640)[None, None, :]
    face = torch.from_numpy(astronaut[30:230, 150:350]).permute(2, 0, 1)[None].float()
    small = torch.nn.functional.interpolate(face, size=(24, 24), mode="area")[0].numpy()

    def frame(with_face_at=None):
        img = scene + rng.normal(0, 4, size=scene.shape)  # sensor noise, sigma 4 levels
        if with_face_at is not None:
            y, x = with_face_at
            img[:, y : y + 24, x : x + 24] = small
        return np.clip(img, 0, 255).astype(np.uint8)

    reference = thumbnails(torch.from_numpy(frame()[None]))[0]
    places = [(0, 0), (100, 203), (336, 616), (171, 13)]
    frames = torch.from_numpy(np.stack([frame(), frame()] + [frame(p) for p in places]))
    assert picture_changed(thumbnails(frames), reference, 8.0).tolist() == [False, False, True, True, True, True]
    assert picture_changed(thumbnails(frames), None, 8.0).all()  # no reference: every frame is new
    tiny = torch.zeros(2, 3, 6, 40, dtype=torch.uint8)  # no whole cell: nothing to compare, always a change
    assert picture_changed(thumbnails(tiny), thumbnails(tiny)[0], 8.0).tolist() == [True, True]


def test_box_iou_matches_a_loop():
    rng = np.random.default_rng(1)
    a = np.sort(rng.uniform(0, 50, size=(5, 2, 2)), axis=1).transpose(0, 2, 1).reshape(5, 4)[:, [0, 2, 1, 3]]
    b = np.sort(rng.uniform(0, 50, size=(4, 2, 2)), axis=1).transpose(0, 2, 1).reshape(4, 4)[:, [0, 2, 1, 3]]
    got = box_iou(a, b)
    for i in range(5):
        for j in range(4):
            ix = max(0.0, min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]))
            iy = max(0.0, min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]))
            union = (a[i, 2] - a[i, 0]) * (a[i, 3] - a[i, 1]) + (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1]) - ix * iy
            assert abs(got[i, j] - ix * iy / union) < 1e-9


def _boxes_batches(n_frames: int = 30):
    """Two faces crossing horizontally (at different heights), one leaving; embeddings per person."""
    rng = np.random.default_rng(2)
    people = rng.normal(size=(2, 8))
    out = []
    for f in range(n_frames):
        boxes, emb = [], []
        boxes.append([10 + 6 * f, 20, 60 + 6 * f, 70])
        emb.append(people[0] + 0.1 * rng.normal(size=8))
        if f < 25:
            boxes.append([190 - 6 * f, 40, 240 - 6 * f, 90])
            emb.append(people[1] + 0.1 * rng.normal(size=8))
        out.append((np.array(boxes, float), np.array(emb, float)))
    return out


def _run(tracker: FaceTracker, data, start: int, stop: int, batch: int = 4) -> list[int]:
    ids = []
    frames = torch.zeros(batch, 3, 8, 8, dtype=torch.uint8)
    for lo in range(start, stop, batch):
        chunk = data[lo : min(stop, lo + batch)]
        boxes = torch.tensor(np.concatenate([b for b, _ in chunk]), dtype=torch.float32)
        emb = torch.tensor(np.concatenate([e for _, e in chunk]), dtype=torch.float32)
        frame = torch.cat([torch.full((len(b),), i, dtype=torch.long) for i, (b, _) in enumerate(chunk)])
        got = tracker.update(frames[: len(chunk)], list(range(lo, lo + len(chunk))), boxes,
                             torch.full((len(boxes),), 0.9), frame, emb)
        ids += got.tolist()
    return ids


def test_crossing_faces_keep_their_tracks_and_resume_gives_the_same_ids():
    data = _boxes_batches()
    whole = _run(FaceTracker(TrackerConfig(appearance_gate=0.5)), data, 0, 30)
    assert set(whole) == {0, 1}, "two tracks through the crossing"
    # frame by frame: the first face is always track 0
    rows = np.cumsum([0] + [len(b) for b, _ in data])
    assert all(whole[rows[f]] == 0 for f in range(30))
    # interrupted after frame 13 (mid-batch boundary), state through JSON-ish copies, resumed
    first = FaceTracker(TrackerConfig(appearance_gate=0.5))
    part = _run(first, data, 0, 14)
    state = copy.deepcopy(first.state_dict())
    json.dumps({k: v for k, v in state.items() if not isinstance(v, np.ndarray)})  # scalars are JSON-able
    listed = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in state.items()}
    resumed = FaceTracker()
    resumed.load_state_dict(json.loads(json.dumps(listed)))
    assert part + _run(resumed, data, 14, 30) == whole


def test_lost_track_recovers_and_cut_ends_tracks():
    tracker = FaceTracker(TrackerConfig(max_lost=3))
    frames = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    box = torch.tensor([[10.0, 10, 50, 50]])
    one, none = torch.zeros(1, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    s = torch.tensor([0.9])
    got = [int(tracker.update(frames, [0], box, s, one)[0])]
    tracker.update(frames, [1], box[:0], s[:0], none)  # missed for two frames
    tracker.update(frames, [2], box[:0], s[:0], none)
    got.append(int(tracker.update(frames, [3], box + 2, s, one)[0]))
    low = int(tracker.update(frames, [4], box + 3, torch.tensor([0.3]), one)[0])  # second stage
    assert got == [0, 0] and low == 0
    white = torch.full((1, 3, 8, 8), 255, dtype=torch.uint8)
    assert int(tracker.update(white, [5], box + 3, s, one)[0]) == 1, "a cut ends every track"
    assert int(tracker.update(white, [6], box + 3, torch.tensor([0.05]), one)[0]) == -1  # under low_score
    with pytest.raises(ValueError, match="increase"):
        tracker.update(white, [6], box, s, one)


def test_a_batch_without_faces_keeps_tracks_with_embeddings():
    """A whole batch with no face (embeddings Tensor[0, D]) is a gap, not an error; the track goes on."""
    tracker = FaceTracker(TrackerConfig(appearance_gate=0.5))
    frames = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    box = torch.tensor([[10.0, 10, 50, 50], [11.0, 10, 51, 50]])
    emb = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.1, 0.0]])
    first = tracker.update(frames, [0, 1], box, torch.tensor([0.9, 0.9]), torch.tensor([0, 1]), emb)
    empty = tracker.update(frames, [2, 3], box[:0], torch.zeros(0), torch.zeros(0, dtype=torch.long), emb[:0])
    after = tracker.update(frames[:1], [4], box[:1] + 2, torch.tensor([0.9]), torch.tensor([0]), emb[:1])
    assert first.tolist() == [0, 0] and empty.tolist() == [] and after.tolist() == [0]


@pytest.fixture(scope="module")
def scene_faces(astronaut, camera):
    """The composed scene, and per frame the lite set's boxes, scores and embeddings."""
    from facecli.models.lite import load_lite

    scene = compose(astronaut, camera)
    lite = load_lite("cpu")
    batches = []
    for lo in range(0, len(scene.frames), 8):
        frames = torch.from_numpy(np.stack(scene.frames[lo : lo + 8])).permute(0, 3, 1, 2).contiguous()
        det = lite.detect(frames)
        res = lite.analyze(frames, det)
        batches.append((frames, list(range(lo, lo + len(frames))), res.boxes, res.scores, res.frame, res.identity))
    return scene, batches


def _track_scene(batches, config):
    tracker = FaceTracker(config)
    acc = TrackAccumulator()
    hyp = [[] for _ in range(sum(len(b[1]) for b in batches))]
    rows = []
    for frames, index, boxes, scores, frame, emb in batches:
        ids = tracker.update(frames, index, boxes, scores, frame, emb)
        acc.add(ids.numpy(), np.asarray(index)[frame.numpy()], emb.numpy())
        for i, t in enumerate(ids.tolist()):
            f = index[int(frame[i])]
            rows.append((f, t))
            if t >= 0:
                hyp[f].append((t, boxes[i].numpy()))
    return hyp, acc, rows


def test_composed_video_two_people_two_identities(scene_faces):
    from tests.support.mot_eval import evaluate

    scene, batches = scene_faces
    config = TrackerConfig(appearance_gate=APPEARANCE_GATE)
    hyp, acc, rows = _track_scene(batches, config)
    # no track holds two faces of one frame
    tracked = [(f, t) for f, t in rows if t >= 0]
    assert len(set(tracked)) == len(tracked)
    labels = track_identities(acc, LINKAGE_THRESHOLD)
    assert len(set(labels.values()) - {None}) == 2, labels
    tracks = evaluate(scene.gt, hyp)
    people = [[(labels[t], b) for t, b in h] for h in hyp]
    idents = evaluate(scene.gt, [[(int(p.split("_")[1]), b) for p, b in h] for h in people])
    print(f"\ntracks: {len({t for h in hyp for t, _ in h})}; track level {tracks}; identity level {idents}")
    # a track never jumps from one person to the other (its boxes match one person's truth)...
    for t in {t for h in hyp for t, _ in h}:
        matched = {p for h, g in zip(hyp, scene.gt) for tt, b in h if tt == t for p, gb in g if _iou(b, gb) >= 0.5}
        assert len(matched) <= 1, (t, matched)
    # ...the cut and the occlusions end tracks (CLEAR counts those as switches); identities join them
    assert len({t for h in hyp for t, _ in h}) >= 4
    assert idents["id_switches"] == 0 and idents["idf1"] > 0.85 and idents["hota"] > tracks["hota"]
    # resumed mid-video from a saved state: the same track ids
    first = FaceTracker(config)
    head = [first.update(*b).tolist() for b in batches[:5]]
    second = FaceTracker()
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    tail = [second.update(*b).tolist() for b in batches[5:]]
    again = FaceTracker(config)
    assert head + tail == [again.update(*b).tolist() for b in batches]
    before = {t for f, t in rows if t >= 0 and f < CUT}
    assert before and before.isdisjoint({t for f, t in rows if t >= 0 and f >= CUT}), "the cut ends every track"
