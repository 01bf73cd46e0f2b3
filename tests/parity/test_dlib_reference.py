"""dlib embedding parity: facecli's DlibEmbedder against dlib's own compute_face_descriptor.

Optional: dlib compiles from source (several minutes), so it is not part of `make ref-envs` or
CI. Build it with `python3 -m venv .dlib-ref && .dlib-ref/bin/pip install dlib numpy`, or point
FACECLI_DLIB_PYTHON at an interpreter that imports dlib; the test skips otherwise (even in CI).

Both sides get the same frames and the same 5 points (taken from facecli's lite mesh, in dlib's
order, rounded to whole pixels as dlib stores them).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.parity.conftest import REPO, run_reference
from tests.paths import LITE_SOURCES

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def dlib_python() -> str:
    python = os.environ.get("FACECLI_DLIB_PYTHON") or str(REPO / ".dlib-ref" / "bin" / "python")
    if not Path(python).exists() or subprocess.run([python, "-c", "import dlib"], capture_output=True).returncode:
        pytest.skip("no dlib reference environment (optional: see this file's docstring)")
    if not (LITE_SOURCES / "dlib_face_recognition_resnet_model_v1.dat").is_file():
        pytest.skip("original dlib model file not found")
    return python


def test_descriptors_match_dlib(dlib_python, tmp_path, astronaut):
    from facecli.models.lite import load_lite
    from facecli.ops.align import MESH_TO_DLIB_5

    frames = [astronaut, np.ascontiguousarray(astronaut[:, ::-1]), np.ascontiguousarray(astronaut[40:, 30:][:472, :482])]
    frames = [np.ascontiguousarray(np.pad(f, ((0, 512 - f.shape[0]), (0, 512 - f.shape[1]), (0, 0)))) for f in frames]
    batch = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()
    lite = load_lite("cpu")
    with torch.inference_mode():
        results = lite.analyze(batch, lite.detect(batch))
    assert results.frame.tolist() == [0, 1, 2]
    points = results.mesh[:, list(MESH_TO_DLIB_5), :2].round()
    ours = lite.identity.embed(batch, results.frame, points).numpy()

    np.savez(tmp_path / "in.npz", images=np.stack(frames), points=points.numpy())
    run_reference(dlib_python, "ref_dlib.py", LITE_SOURCES / "dlib_face_recognition_resnet_model_v1.dat",
                  tmp_path / "in.npz", tmp_path / "out.npz")
    ref = np.load(tmp_path / "out.npz")["descriptors"]
    distance = np.linalg.norm(ours - ref, axis=1)
    print(f"facecli vs dlib descriptor distance: {np.round(distance, 4).tolist()}")
    assert distance.max() < 0.05, "well inside dlib's 0.6 same-person distance"
