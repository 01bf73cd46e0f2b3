"""`facecli cluster-identities` over a dataset of output files written in facecli's layout from
synthetic identities: folders, manifests, globs, tracks, mirrored output, summary, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from facecli.cli import app
from facecli.identity.metrics import clustering_scores
from facecli.schema import METADATA_KEY, read_metadata
from tests.support.synthetic_identities import make_faces

runner = CliRunner()


def invoke(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def _write_output(path: Path, rows: pd.DataFrame, dim: int, model_set: str = "lite", track: bool = True) -> None:
    """A facecli-style output: box, score, Identity_*, frame fields, Identity, time_s (+ track)."""
    cols = {
        "FaceRectX": rows["x"].astype("float32"), "FaceRectY": np.float32(10), "FaceRectWidth": np.float32(50),
        "FaceRectHeight": np.float32(50), "FaceScore": rows["score"].astype("float32"),
    }
    emb = np.stack(rows["emb"].to_numpy()) if len(rows) else np.zeros((0, dim))
    for i in range(dim):
        cols[f"Identity_{i + 1}"] = emb[:, i].astype("float32")
    cols.update({"FrameHeight": np.int32(240), "FrameWidth": np.int32(320), "input": rows["input"],
                 "frame": rows["frame"].astype("int64"), "Identity": pd.Series([None] * len(rows), dtype=object)})
    if track:
        cols["track"] = rows["track"].astype("Int64")
    cols["time_s"] = rows["frame"] / 10.0
    table = pa.Table.from_pandas(pd.DataFrame(cols), preserve_index=False)
    table = table.cast(table.schema.set(table.schema.get_field_index("Identity"), pa.field("Identity", pa.string())))
    meta = {"model_set": model_set, "settings": {"identity_model": "dlib" if model_set == "lite" else "arcface"},
            # as facecli writes them: the set's own defaults (lite's and feat-v2's values)
            "model_set_defaults": {"leader_threshold": 0.91 if model_set == "lite" else 0.8,
                                   "linkage_threshold": 0.91 if model_set == "lite" else 0.5}}
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        pd.DataFrame(cols).to_csv(path, index=False)
    else:
        pq.write_table(table, path, row_group_size=500)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """6 videos in 3 output files (2 videos each) below nested folders, plus empty-frame rows."""
    data = make_faces(people=10, videos=6, dim=32, lookalike_cos=0.6, noise=0.6, seed=21)
    root = tmp_path_factory.mktemp("dataset") / "out"
    frames = []
    for v in range(6):
        sel = data.video == v
        df = pd.DataFrame({"frame": data.frame[sel], "track": data.track[sel], "person": data.person[sel],
                           "emb": list(data.embeddings[sel]), "score": 0.9, "x": 5.0 * data.track[sel]})
        df["input"] = f"videos/v{v}.mp4"
        empty = pd.DataFrame({"frame": [int(df["frame"].max()) + 1], "track": [pd.NA], "person": [-1],
                              "emb": [np.full(32, np.nan, dtype=np.float32)], "score": 0.0, "x": np.nan,
                              "input": f"videos/v{v}.mp4"})
        frames.append(pd.concat([df, empty], ignore_index=True))
    files = []
    for k in range(3):
        rel = Path(f"site{k % 2}/batch{k}.parquet")
        part = pd.concat(frames[2 * k : 2 * k + 2], ignore_index=True)
        _write_output(root / rel, part, 32)
        files.append((rel, part))
    (root / "_skip.parquet").write_bytes(b"not read: starts with _")
    return root, files


def test_folder_mirrored_tracks_constraints_and_summary(tmp_path, dataset):
    root, files = dataset
    out = tmp_path / "ids"
    result = invoke("cluster-identities", root, "-o", out, "-t", "0.45", "-q")
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet")) == [
        "_identities.parquet", "site0/batch0.parquet", "site0/batch2.parquet", "site1/batch1.parquet"]
    assert [p.name for p in tmp_path.iterdir()] == ["ids"], "no staging folder left"
    truth, pred, seen = [], [], []
    for rel, part in sorted(files, key=lambda f: f[0].as_posix()):  # the folder's input order
        df = pd.read_parquet(out / rel)
        src = pq.read_table(root / rel)
        assert list(df.columns) == src.schema.names and len(df) == len(part)
        assert np.allclose(df["Identity_1"].to_numpy(), src.column("Identity_1").to_numpy(), equal_nan=True)
        assert df.loc[df["FaceScore"] == 0, "Identity"].isna().all()
        faces = df["FaceScore"] > 0
        # a track is one identity; faces of one frame are different identities
        assert (df[faces].groupby(["input", "track"])["Identity"].nunique() == 1).all()
        grp = df[faces].groupby(["input", "frame"])["Identity"]
        assert (grp.nunique() == grp.size()).all()
        truth += part.loc[faces.to_numpy(), "person"].tolist()
        pred += [int(x.split("_")[1]) for x in df.loc[faces, "Identity"]]
        for x in df.loc[faces, "Identity"]:
            if x not in seen:
                seen.append(x)
        assert read_metadata(pq.read_schema(out / rel))["settings"]["identity_scope"] == "dataset"
    assert seen == [f"Person_{k}" for k in range(len(seen))], "numbered by first appearance in input order"
    scores = clustering_scores(np.array(truth), np.array(pred))
    assert scores["pairwise_f"] > 0.9, scores
    summary = pd.read_parquet(out / "_identities.parquet")
    assert list(summary["identity"]) == seen and summary["faces"].sum() == len(truth)
    first = summary.iloc[0]
    assert first["first_file"] == "site0/batch0.parquet" and first["first_input"] == "videos/v0.mp4"
    assert (summary["tracks"] >= 1).all() and (summary["videos"] >= 1).all() and (summary["rep_similarity"] > 0.5).all()
    assert {"rep_FaceRectX", "rep_frame", "last_time_s", "rep_input"} <= set(summary.columns)
    # without the track column: faces are clustered one by one, same-frame faces still apart
    flat = tmp_path / "flat.parquet"
    table = pq.read_table(root / files[0][0])
    pq.write_table(table.drop(["track"]), tmp_path / "notrack.parquet")
    assert invoke("cluster-identities", tmp_path / "notrack.parquet", "-o", flat, "-t", "0.45", "-q").exit_code == 0
    df = pd.read_parquet(flat)
    grp = df[df["FaceScore"] > 0].groupby(["input", "frame"])["Identity"]
    assert (grp.nunique() == grp.size()).all() and (tmp_path / "flat_identities.parquet").exists()


def test_manifest_glob_csv_and_errors(tmp_path, dataset):
    root, files = dataset
    # a manifest: only status ok outputs are taken
    ds = tmp_path / "ds"
    for rel, _ in files:
        (ds / rel).parent.mkdir(parents=True, exist_ok=True)
        (ds / rel).write_bytes((root / rel).read_bytes())
    (ds / "_manifest.jsonl").write_text("\n".join(json.dumps(e) for e in [
        {"input": "v0", "output": "site0/batch0.parquet", "status": "ok"},
        {"input": "v1", "output": "site1/batch1.parquet", "status": "failed"},
    ]) + "\n")
    out = tmp_path / "m"
    assert invoke("cluster-identities", ds, "-o", out, "-q").exit_code == 0
    assert sorted(p.name for p in out.rglob("*.parquet")) == ["_identities.parquet", "batch0.parquet"]
    # a glob, and a CSV input
    csv = tmp_path / "c" / "one.csv"
    csv.parent.mkdir()
    pd.read_parquet(root / files[1][0]).to_csv(csv, index=False)
    got = invoke("cluster-identities", f"{root}/site0/*.parquet", csv, "-o", tmp_path / "g", "-q")
    assert got.exit_code == 0, got.output
    assert sorted(p.relative_to(tmp_path / "g").as_posix() for p in (tmp_path / "g").rglob("*.*")) == [
        "_identities.parquet", "batch0.parquet", "batch2.parquet", "one.csv"]
    assert pd.read_csv(tmp_path / "g" / "one.csv")["Identity"].str.startswith("Person_").any()
    # refused: mixed model sets, mixed sizes, several inputs into one file; nothing written
    other = tmp_path / "x" / "arc.parquet"
    rows = files[0][1].copy()
    _write_output(other, rows, 32, model_set="feat-v2")
    bad = invoke("cluster-identities", root / files[0][0], other, "-o", tmp_path / "bad")
    assert bad.exit_code == 2 and "cannot mix model sets" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    small = tmp_path / "x" / "small.parquet"
    rows["emb"] = [e[:16] for e in rows["emb"]]
    _write_output(small, rows, 16)
    bad = invoke("cluster-identities", root / files[0][0], small, "-o", tmp_path / "bad")
    assert bad.exit_code == 2 and "16-d" in bad.stderr
    bad = invoke("cluster-identities", root, "-o", tmp_path / "bad.parquet")
    assert bad.exit_code == 2 and "output folder" in bad.stderr
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.parquet").exists()


def test_failure_while_writing_leaves_nothing(tmp_path, dataset, monkeypatch):
    root, _ = dataset
    import facecli.identity.relabel as relabel

    calls = {"n": 0}
    real = relabel._write_file

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(relabel, "_write_file", failing)
    result = invoke("cluster-identities", root, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "No space left" in result.stderr
    assert list(tmp_path.iterdir()) == []
