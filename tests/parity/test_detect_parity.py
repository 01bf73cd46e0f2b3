"""Whole `facecli detect` runs against py-feat 2.1.5 `Detectorv2.detect` on the same files and weights.

Random weights in the published layouts (RetinaFace tamed so a handful of faces survive);
images: RGB JPEG, a face crossing the frame border, greyscale, RGBA, and one with no face.
All numeric columns agree within 1e-3; Pitch and gaze_pitch follow facecli's design document
(the opposite sign of py-feat 2.1.5).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from facecli import to_pyfeat
from facecli.cli import app
from facecli.schema import PYFEAT_NEGATED
from tests.parity.conftest import run_reference

pytestmark = pytest.mark.parity

SIGN_FLIPPED = set(PYFEAT_NEGATED)


@pytest.fixture(scope="module")
def parity_images(tmp_path_factory, astronaut, camera):
    d = tmp_path_factory.mktemp("parity_images")
    Image.fromarray(astronaut).save(d / "astronaut.jpg", quality=92)
    Image.fromarray(astronaut[:, 192:]).save(d / "border.png")  # detections cut by the left edge
    Image.fromarray(camera).save(d / "grey.png")
    rgba = np.dstack([astronaut[::2, ::2][:201, :233], np.full((201, 233), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(d / "rgba.png")
    Image.fromarray(np.full((120, 160, 3), 127, np.uint8)).save(d / "noface.png")
    return [str(d / n) for n in ("astronaut.jpg", "border.png", "grey.png", "rgba.png", "noface.png")]


def test_detect_matches_detectorv2(tmp_path, featv2_weights, parity_images, pyfeat_python):
    ours_path = tmp_path / "ours.parquet"
    result = CliRunner().invoke(
        app,
        ["detect", *parity_images, "-o", str(ours_path), "--models", "feat-v2", "--weights-dir",
         str(featv2_weights), "--device", "cpu", "--quiet", "--batch-size", "1"],  # py-feat: one image a batch
    )
    assert result.exit_code == 0, result.output
    ref_path = tmp_path / "ref.csv"
    run_reference(pyfeat_python, "ref_detectorv2.py", featv2_weights, ref_path, *parity_images)

    ours = pd.read_parquet(ours_path)
    ref = pd.read_csv(ref_path)
    assert list(ours.columns[: len(ref.columns)]) == list(ref.columns)
    assert len(ours) == len(ref)
    assert list(ours["input"]) == list(ref["input"])
    assert list(ours["frame"]) == list(ref["frame"])
    # every image but the blank one has faces; the blank one is a single empty row
    counts = ours.groupby("input")["FaceScore"].apply(lambda s: int((s > 0).sum()))
    assert counts[parity_images[-1]] == 0 and (counts[parity_images[:-1]] > 0).all()
    border = ours[ours["input"] == parity_images[1]]
    assert (border["FaceRectX"] < 0).any(), "no face crosses the frame border"

    numeric = [c for c in ref.columns if c not in ("input", "Identity") and pd.api.types.is_numeric_dtype(ref[c])]
    worst = ("", 0.0)
    for col in numeric:
        a = ours[col].to_numpy(dtype=np.float64)
        b = ref[col].to_numpy(dtype=np.float64) * (-1.0 if col in SIGN_FLIPPED else 1.0)
        assert np.array_equal(np.isnan(a), np.isnan(b)), col
        ok = ~np.isnan(a)
        if ok.any():
            diff = float(np.max(np.abs(a[ok] - b[ok])))
            worst = max(worst, (col, diff), key=lambda t: t[1])
            assert diff <= 1e-3, f"{col}: max abs diff {diff}"
    assert list(ours["Identity"].fillna("")) == list(ref["Identity"].fillna(""))

    # facecli's py-feat view is py-feat's output: same columns, same order, same signs
    view = to_pyfeat(ours)
    assert list(view.columns) == list(ref.columns)
    for col in numeric:
        a, b = view[col].to_numpy(dtype=np.float64), ref[col].to_numpy(dtype=np.float64)
        ok = ~np.isnan(b)
        assert np.array_equal(np.isnan(a), ~ok) and np.allclose(a[ok], b[ok], rtol=0, atol=1e-3), col
    print(f"worst column {worst[0]}: {worst[1]:.2e}")
