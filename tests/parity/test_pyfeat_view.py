"""facecli's py-feat view loaded into py-feat 2.1.5's Fex (in the reference environment).

A feat-v2 output (random weights: every column group, AUs, gaze and blendshapes included) and a
lite output are turned into the view, saved as CSV and loaded by py-feat twice: with
``Fex(df, **facecli.pyfeat.fex_columns(df))`` and with py-feat's own ``read_feat``. Every
accessor must return the view's columns and values. (That the view's values equal what py-feat's
Detectorv2 writes for the same images is checked in test_detect_parity.py.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import facecli
from facecli import columns as C
from facecli.cli import app
from tests.parity.conftest import run_reference

pytestmark = pytest.mark.parity


def _detect(args) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("models", ["feat-v2", "lite"])
def test_view_loads_into_fex(models, tmp_path, astronaut, featv2_weights, pyfeat_python):
    Image.fromarray(astronaut).save(tmp_path / "astronaut.png")
    Image.fromarray(np.full((96, 128, 3), 120, np.uint8)).save(tmp_path / "blank.png")
    out = tmp_path / "faces.parquet"
    extra = ["--weights-dir", featv2_weights] if models == "feat-v2" else []
    _detect(["detect", tmp_path / "astronaut.png", tmp_path / "blank.png", "-o", out, "--models", models,
             "--device", "cpu", "--quiet", *extra])
    view = facecli.read(out, pyfeat=True)
    view.to_csv(tmp_path / "view.csv", index=False)
    kwargs = facecli.pyfeat.fex_columns(view)
    (tmp_path / "kwargs.json").write_text(json.dumps(kwargs))
    run_reference(pyfeat_python, "ref_fex_view.py", tmp_path / "view.csv", tmp_path / "kwargs.json",
                  tmp_path / "fex.json")
    loaded = json.loads((tmp_path / "fex.json").read_text())
    groups = {"aus": C.AUS, "emotions": C.EMOTIONS, "poses": C.POSE, "faceboxes": C.FACEBOX,
              "landmarks": C.LANDMARKS, "identity_embeddings": C.IDENTITY, "gazes": C.GAZE,
              "blendshapes": C.BLENDSHAPES}
    for how, fex in loaded.items():
        assert fex["type"] == "Fex", how
        for name, names in groups.items():
            cols = C.present(view, names)
            if not cols and name in ("gazes", "blendshapes"):
                assert "error" in fex[name], f"{how}.{name}: lite has none, py-feat must say so"
                continue
            assert fex[name]["columns"] == cols, f"{how}.{name}"
            got = np.asarray(fex[name]["values"], dtype=np.float64).reshape(len(view), len(cols))
            want = view[cols].to_numpy(dtype=np.float64)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=f"{how}.{name}")
        np.testing.assert_allclose(fex["dlib68_x"], view[list(C.LANDMARKS_X)].to_numpy(np.float64), rtol=1e-6)
        np.testing.assert_allclose(fex["dlib68_y"], view[list(C.LANDMARKS_Y)].to_numpy(np.float64), rtol=1e-6)
        assert fex["identities"] == [None if v is None or v != v else v for v in view["Identity"].tolist()]
        assert fex["inputs"] == view["input"].tolist()
        assert [t[0] for t in fex["time"]] == view["frame"].tolist()
        faces = view[view["FaceScore"] > 0]
        assert fex["top_emotion"] == list(faces[list(C.EMOTIONS)].idxmax(axis=1)), how
    assert (view["FaceScore"] > 0).sum() >= 1 and (view["FaceScore"] == 0).sum() == 1
    assert len(kwargs["au_columns"]) == (20 if models == "feat-v2" else 0)
