"""facecli.read, facecli.dataset, facecli.columns and the py-feat view, on real lite outputs.

Outputs come from `facecli video` runs (lite set) on two short clips of the astronaut's face, as
an output folder (Parquet and CSV) and as one file; the folder also holds what a real dataset
folder holds besides outputs (manifest, a temporary file, an in-progress folder, a summary).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import facecli
from facecli import columns as C
from facecli.cli import app
from facecli.schema import PYFEAT_NEGATED
from tests.conftest import write_video
from tests.paths import REPO

DATA = REPO / "tests" / "data"

LITE = ["--models", "lite", "--device", "cpu", "--batch-size", "4", "--quiet"]


def _invoke(*args) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, astronaut):
    root = tmp_path_factory.mktemp("results")
    clips = root / "in"
    for k, rel in enumerate(("a/one.mp4", "b/two.mp4")):
        (clips / rel).parent.mkdir(parents=True)
        frames = [np.ascontiguousarray(astronaut[20 + 8 * k + 2 * i: 276 + 8 * k + 2 * i, 100 + i: 356 + i][::2, ::2])
                  for i in range(4)]
        write_video(clips / rel, frames, fps=10)
    out, csv, single = root / "out", root / "csv", root / "all.parquet"
    _invoke("video", clips, "-o", f"{out}/", *LITE)
    _invoke("video", clips, "-o", f"{csv}/", "--format", "csv", *LITE)
    _invoke("video", clips, "-o", single, *LITE)
    # what else lives in a dataset folder: none of it is rows
    (out / ".one.parquet.part-123").write_bytes(b"half a file")
    (out / "a" / ".one.parquet.facecli-partial").mkdir()
    pq.write_table(pq.read_table(out / "a" / "one.parquet"), out / "a" / ".one.parquet.facecli-partial" / "x.parquet")
    pq.write_table(pa.table({"identity": ["Person_0"], "faces": [3]}), out / "_identities.parquet")
    return {"in": clips, "out": out, "csv": csv, "single": single}


def _concat(paths) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def test_folder_file_and_glob_read_the_same_rows(outputs):
    out = outputs["out"]
    want = _concat([out / "a" / "one.parquet", out / "b" / "two.parquet"])
    got = facecli.read(out)
    pd.testing.assert_frame_equal(got, want)
    assert list(got.columns) == list(pq.read_schema(out / "a" / "one.parquet").names)
    assert got.attrs["files"] == 2 and got.attrs["model_sets"] == ["lite"]
    meta = got.attrs["facecli"]
    assert meta["model_set"] == "lite" and "settings" in meta and "input_info" not in meta
    assert len(got.attrs["settings_hashes"]) == 1
    pd.testing.assert_frame_equal(facecli.read(f"{out}/**/*.parquet"), want)
    pd.testing.assert_frame_equal(facecli.read([out / "a" / "one.parquet", out / "b"]), want)
    single = facecli.read(outputs["single"])
    assert single.attrs["files"] == 1 and len(single) == len(want)
    # the one file holds both inputs: same measurements as the folder's two files
    pd.testing.assert_frame_equal(single.drop(columns=["Identity", "track"]), want.drop(columns=["Identity", "track"]))


def test_columns_and_filters_pass_through(outputs):
    out = outputs["out"]
    full = facecli.read(out)
    name = str(outputs["in"] / "b" / "two.mp4")
    cols = ["input", "frame", *C.present(full, C.EMOTIONS), "Pitch"]
    got = facecli.read(out, columns=cols, filters=[("input", "==", name), ("frame", ">=", 1)])
    want = full.loc[(full["input"] == name) & (full["frame"] >= 1), cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    assert len(got) == 3
    expr = facecli.read(out, columns=["FaceScore"], filters=pc.field("frame") == 0)
    assert len(expr) == 2 and list(expr.columns) == ["FaceScore"]
    with pytest.raises(facecli.ReadError, match="no column nope"):
        facecli.read(out, columns=["frame", "nope"])


def test_csv_outputs_read_with_the_parquet_types_and_metadata(outputs):
    parquet, csv = facecli.read(outputs["out"]), facecli.read(outputs["csv"])
    assert list(csv.columns) == list(parquet.columns)
    assert dict(csv.dtypes) == dict(parquet.dtypes)
    pd.testing.assert_frame_equal(csv, parquet, check_exact=False, rtol=1e-6)
    assert csv.attrs["facecli"]["model_set"] == "lite" and csv.attrs["facecli"]["settings"]["output_format"] == "csv"
    part = facecli.read(outputs["csv"], columns=["frame", "Identity"], filters=[("frame", "==", 3)])
    assert list(part["Identity"]) == ["Person_0", "Person_0"]


def test_dataset_for_duckdb(outputs):
    duckdb = pytest.importorskip("duckdb")
    ds = facecli.dataset(outputs["out"])  # noqa: F841 - DuckDB finds it by name
    query = "SELECT input, count(*) AS n, avg(Happy) AS happy FROM ds GROUP BY input ORDER BY input"
    rows = duckdb.sql(query).fetchall()
    df = facecli.read(outputs["out"])
    want = df.groupby("input")["Happy"].agg(["size", "mean"])
    assert [(r[0], r[1]) for r in rows] == [(i, int(n)) for i, n in want["size"].items()]
    assert np.allclose([r[2] for r in rows], want["mean"].to_numpy(), rtol=1e-6)


def test_errors_are_one_line(outputs, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing: no such file"):
        facecli.read(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no facecli output files"):
        facecli.read(tmp_path / "empty")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(facecli.ReadError, match="bad.parquet: not a readable parquet file"):
        facecli.read(bad)


def test_column_lists_come_from_the_schema(outputs):
    df = facecli.read(outputs["single"])
    assert C.ALL[: len(C.FACEBOX)] == C.FACEBOX == ("FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight",
                                                     "FaceScore")
    reference = (DATA / "columns-detectorv2.txt").read_text().split()
    assert [c for c in C.ALL if c not in C.FACECLI_ONLY and c != "approx_time"] == reference
    assert len(C.AUS) == 20 and len(C.LANDMARKS) == 136 and len(C.MESH) == 3 * 478 and len(C.BLENDSHAPES) == 52
    assert C.MESH_Z[0] == "mesh_z_0" and C.LANDMARKS_Y[0] == "y_0" and C.POSE == ("Pitch", "Roll", "Yaw", "X", "Y", "Z")
    assert C.FRAME == ("FrameHeight", "FrameWidth", "input", "frame", "approx_time", "time_s")
    # a lite file: every column is in exactly one list; the groups lite cannot produce are absent
    listed = [c for group in (C.FACEBOX, C.LANDMARKS, C.POSE, C.EMOTIONS, C.IDENTITY, C.MESH, C.KEYPOINTS,
                              C.FRAME, C.LABELS) for c in C.present(df, group)]
    assert sorted(listed) == sorted(df.columns)
    assert C.present(df, C.AUS) == [] and C.present(df, C.IDENTITY)[-1] == "Identity_128"
    assert C.present(df.columns, C.GAZE) == C.present(pa.Table.from_pandas(df), C.GAZE) == []


def test_pyfeat_view_signs_and_columns(outputs):
    df = facecli.read(outputs["single"])
    view = facecli.to_pyfeat(df)
    for col in PYFEAT_NEGATED:
        if col in df:
            np.testing.assert_array_equal(view[col].to_numpy(), -df[col].to_numpy())
    assert "Pitch" in df and (df["Pitch"].abs() > 0).any(), "a sign flip must be visible"
    for col in ("Roll", "Yaw", "Happy", "x_0", "FaceScore"):
        np.testing.assert_array_equal(view[col].to_numpy(), df[col].to_numpy())
    reference = (DATA / "columns-detectorv2.txt").read_text().split()
    order = reference[: reference.index("frame") + 1] + ["approx_time", "Identity"]
    assert list(view.columns) == [c for c in order if c in df.columns], "Detectorv2's order, facecli's own dropped"
    assert view.attrs["facecli_view"] == "pyfeat-2.1.5" and view.attrs["files"] == 1
    assert "Pitch" in df and df["Pitch"].iloc[0] != view["Pitch"].iloc[0]  # the input is not changed
    with pytest.raises(ValueError, match="already"):
        facecli.to_pyfeat(view)
    kept = facecli.to_pyfeat(df, extra=True)
    assert list(kept.columns) == list(df.columns)
    pd.testing.assert_frame_equal(facecli.read(outputs["single"], pyfeat=True), view)
    kwargs = facecli.pyfeat.fex_columns(view)
    assert kwargs["au_columns"] == [] and kwargs["gaze_columns"] is None and len(kwargs["identity_columns"]) == 128


def test_files_with_different_columns_read_together(outputs, tmp_path):
    a = pq.read_table(outputs["out"] / "a" / "one.parquet")
    b = pq.read_table(outputs["out"] / "b" / "two.parquet").drop_columns(["Happy", "Sad"])
    pq.write_table(a, tmp_path / "a.parquet")
    pq.write_table(b, tmp_path / "b.parquet")
    df = facecli.read(tmp_path)
    assert list(df.columns) == a.schema.names and len(df) == a.num_rows + b.num_rows
    assert df["Happy"].iloc[: a.num_rows].notna().all() and df["Happy"].iloc[a.num_rows:].isna().all()
    # a column and a filter that only some files have: the others' rows read it as null
    pq.write_table(b, tmp_path / "0_first.parquet")  # sorted before a.parquet: the first file lacks Happy
    got = facecli.read(tmp_path, columns=["frame", "Happy"], filters=[("Happy", ">", 0.5)])
    want = a.to_pandas()
    want = want.loc[want["Happy"] > 0.5, ["frame", "Happy"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    with pytest.raises(facecli.ReadError, match="no column Hapy"):
        facecli.read(tmp_path, columns=["Hapy"])
