"""Coarse scheduled detections (lite with ``--detect-every``): the tiled scan without its finest
level on most scheduled frames; faces smaller than it looks for are followed on meanwhile.

Real faces (scikit-image's astronaut and camera) pasted on a faceless photo, 640 x 360: the scan
has a finest level (faces of 24-66 px), a second level (from 60 px) and the letterbox, so a
coarse scan looks for faces from 60 px up. A 150 px face is found by both scans, a 40 px face
only by the full one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facecli.models.lite.tiling import SCAN_FACE
from facecli.pipeline.follow import FaceFollower, FollowConfig
from tests.support.faces import background, face_patch, match, paste, skimage_faces

HEIGHT, WIDTH = 360, 640
BIG, SMALL = 150, 40


@pytest.fixture(scope="module")
def lite():
    from facecli.models.lite import load_lite

    return load_lite("cpu")


@pytest.fixture(scope="module")
def patches():
    faces = skimage_faces()
    return face_patch(faces[0], BIG), face_patch(faces[1], SMALL)


def _clip(patches, steps: int, small_from: int = 0, small_until: int | None = None) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Frames Tensor[steps, 3, H, W] uint8 (both faces drifting 3 px a frame; the small one in
    frames ``small_from`` to ``small_until`` - 1) and the true boxes of each frame."""
    big, small = patches
    frames, truth = [], []
    for t in range(steps):
        frame = background(HEIGHT, WIDTH, "coffee")
        boxes = [paste(frame, big, 60 + 3 * t, 40 + t, BIG)]
        if small_from <= t < (steps if small_until is None else small_until):
            boxes.append(paste(frame, small, 420 + 3 * t, 220 - t, SMALL))
        frames.append(frame)
        truth.append(np.array(boxes))
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2), truth


def _follow(lite, frames: torch.Tensor, every: int, small_scan_every: int, batch: int = 5):
    """Per-frame boxes of a follower over ``frames``, and how many frames had a coarse detection."""
    coarse_frames = []

    def coarse(sub):
        coarse_frames.append(len(sub))
        return lite.detect_coarse(sub)

    follower = FaceFollower(lite, FollowConfig(every=every, small_scan_every=small_scan_every), detect_coarse=coarse)
    boxes = []
    with torch.inference_mode():
        for start in range(0, len(frames), batch):
            out = follower(frames[start : start + batch].contiguous(memory_format=torch.channels_last))
            boxes += [out.boxes[out.frame == f].numpy() for f in range(min(batch, len(frames) - start))]
    return boxes, sum(coarse_frames), follower


def test_a_coarse_scan_leaves_out_the_finest_level(lite, patches):
    levels = lite.detector.plan(HEIGHT, WIDTH)
    assert len(levels) == 3 and lite.coarse_min_face(HEIGHT, WIDTH) == pytest.approx(SCAN_FACE / levels[1].scale)
    assert lite.coarse_min_face(HEIGHT, WIDTH) == pytest.approx(60.0)
    frames, truth = _clip(patches, 1)
    with torch.inference_mode():
        full, coarse = lite.detect(frames), lite.detect_coarse(frames)
    hits, duplicates, strays = match(full.boxes.numpy(), truth[0])
    assert hits.tolist() == [1, 1] and duplicates == 0 and strays == 0
    hits, _, strays = match(coarse.boxes.numpy(), truth[0])
    assert hits.tolist() == [1, 0] and strays == 0  # the 40 px face is below the coarse scan


def test_small_faces_are_followed_through_coarse_detections(lite, patches):
    """every 2, a full scan every 3rd scheduled detection: frames 0, 6, 12 full, 2, 4, 8, 10 coarse;
    both faces in every frame, each once."""
    frames, truth = _clip(patches, 13)
    boxes, coarse, follower = _follow(lite, frames, every=2, small_scan_every=3)
    assert coarse == 4 and follower.detections == 7
    for t, (found, want) in enumerate(zip(boxes, truth)):
        hits, duplicates, strays = match(found, want)
        assert hits.tolist() == [1, 1] and duplicates == 0 and strays == 0, (t, found.round())


def test_a_small_face_entering_is_found_at_the_next_full_scan(lite, patches):
    """The 40 px face enters at frame 3: the coarse detection at frame 4 does not look for it, the
    full one at frame 6 finds it, and it is followed from there; with every scheduled detection
    full it is found at frame 4. The 150 px face is in every frame throughout."""
    frames, truth = _clip(patches, 10, small_from=3)
    for small_scan_every, found_at in ((3, 6), (1, 4)):
        boxes, coarse, _ = _follow(lite, frames, every=2, small_scan_every=small_scan_every)
        assert coarse == (3 if small_scan_every == 3 else 0)  # frames 2, 4 and 8
        for t, (found, want) in enumerate(zip(boxes, truth)):
            hits, duplicates, strays = match(found, want)
            expected = [1, 1] if t >= found_at else [1] if t < 3 else [1, 0]
            assert hits.tolist() == expected and duplicates == 0 and strays == 0, (small_scan_every, t, found.round())


def test_a_small_face_lost_at_a_coarse_detection_is_detected_again_in_full(lite, patches):
    """The 40 px face leaves at frame 8, a coarse detection frame (every 2: 0 and 6 full, 2, 4 and
    8 coarse): followed into frame 8 it is lost, so frame 8 is detected again in full; no stale
    face is kept, and frame 8 counts as one detection."""
    frames, truth = _clip(patches, 10, small_until=8)
    boxes, coarse, follower = _follow(lite, frames, every=2, small_scan_every=3)
    assert coarse == 3 and follower.detections == 5
    for t, (found, want) in enumerate(zip(boxes, truth)):
        hits, duplicates, strays = match(found, want)
        assert hits.tolist() == ([1, 1] if t < 8 else [1]) and duplicates == 0 and strays == 0, (t, found.round())
