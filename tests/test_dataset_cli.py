"""Dataset-scale runs end to end with the lite set: output folders, manifest, shards, skip, --jobs."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pytest
from PIL import Image
from typer.testing import CliRunner

from facecli.cli import app
from tests.conftest import write_video

runner = CliRunner()
LITE = ["--models", "lite", "--device", "cpu", "--batch-size", "4"]
MANIFEST_FIELDS = {"input", "output", "status", "error", "frames", "faces", "seconds", "model_set", "facecli_version",
                   "shard", "host", "finished_at"}


def invoke(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def clip_frames(astronaut, shift: int, n: int = 6) -> list[np.ndarray]:
    return [np.ascontiguousarray(astronaut[20 + shift + 2 * i : 276 + shift + 2 * i, 100 + i : 356 + i][::2, ::2])
            for i in range(n)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, astronaut):
    """in/a/b/one.mp4, in/a/two.mp4, in/three.mp4, in/c/broken.mp4 (zero bytes), in/notes.txt."""
    root = tmp_path_factory.mktemp("dataset") / "in"
    for k, rel in enumerate(("a/b/one.mp4", "a/two.mp4", "three.mp4")):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_video(root / rel, clip_frames(astronaut, 10 * k), fps=10)
    (root / "c").mkdir()
    (root / "c" / "broken.mp4").write_bytes(b"")
    (root / "notes.txt").write_text("not a video")
    return root


def manifest(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "_manifest.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, dataset):
    out = tmp_path_factory.mktemp("plain") / "out"
    result = invoke("video", dataset, "-o", f"{out}/", *LITE, "-q")
    assert result.exit_code == 1, result.output  # broken.mp4 failed, the others were written
    return out


def test_output_folder_mirrors_the_inputs_and_reads_as_one_dataset(plain_run, dataset):
    files = sorted(str(p.relative_to(plain_run)) for p in plain_run.rglob("*") if p.is_file())
    assert files == ["_manifest.jsonl", "a/b/one.parquet", "a/two.parquet", "three.parquet"]
    lines = manifest(plain_run)
    assert all(MANIFEST_FIELDS <= set(line) for line in lines)
    status = {os.path.relpath(line["input"], dataset): (line["status"], line["output"]) for line in lines}
    assert status["c/broken.mp4"][0] == "failed" and status["c/broken.mp4"][1] is None
    assert status["a/b/one.mp4"] == ("ok", str(plain_run / "a/b/one.parquet"))
    broken = next(line for line in lines if line["status"] == "failed")
    assert "broken.mp4" in broken["error"] and "\n" not in broken["error"]
    ok = [line for line in lines if line["status"] == "ok"]
    assert all(line["frames"] == 6 and line["faces"] >= 5 and line["model_set"] == "lite" for line in ok)
    whole = pd.read_parquet(plain_run)  # pandas: the folder is one dataset (manifest and hidden files skipped)
    assert len(whole) == sum(len(pd.read_parquet(plain_run / f)) for f in files[1:])
    assert set(whole["input"]) == {str(dataset / f) for f in ("a/b/one.mp4", "a/two.mp4", "three.mp4")}
    assert pads.dataset(str(plain_run), format="parquet").count_rows() == len(whole)
    duckdb = pytest.importorskip("duckdb")
    n = duckdb.sql(f"select count(*) from read_parquet('{plain_run}/**/*.parquet')").fetchall()[0][0]
    assert n == len(whole)


def test_shards_together_equal_one_plain_run(tmp_path, dataset, plain_run):
    out = tmp_path / "sharded"
    codes = [invoke("video", dataset, "-o", f"{out}/", *LITE, "--shard", f"{i}/3", "-q").exit_code for i in range(3)]
    assert sorted(codes) == [0, 0, 1]  # the shard holding broken.mp4 reports it
    for rel in ("a/b/one.parquet", "a/two.parquet", "three.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(out / rel), pd.read_parquet(plain_run / rel), check_exact=True)
    lines = manifest(out)
    assert len(lines) == 4 and sorted(line["shard"] for line in lines) == ["0/3", "0/3", "1/3", "2/3"]


def test_slurm_array_task_picks_its_shard_and_says_so(tmp_path, dataset):
    env = {"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_MAX": "13",
           "SLURM_ARRAY_TASK_COUNT": "4"}
    result = invoke("video", dataset, "-o", f"{tmp_path}/o/", *LITE, env=env)
    assert "shard 2/4 (SLURM_ARRAY_TASK_ID=12 of array 10-13): 1 of 4 inputs" in result.stderr
    assert [line["shard"] for line in manifest(tmp_path / "o")] == ["2/4"]
    irregular = invoke("video", dataset, "-o", f"{tmp_path}/p/", *LITE,
                       env={**env, "SLURM_ARRAY_TASK_MAX": "17"})  # e.g. --array=10,11,12,17
    assert irregular.exit_code == 2 and "--shard" in irregular.stderr and "Traceback" not in irregular.output


def test_skip_existing_keeps_complete_outputs_and_reports_other_settings(tmp_path, dataset, plain_run):
    out = tmp_path / "out"
    shutil.copytree(plain_run, out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    again = invoke("video", dataset, "-o", f"{out}/", *LITE, "--skip-existing")
    assert again.exit_code == 1  # broken.mp4 still fails; the three others are skipped
    new = manifest(out)[4:]
    assert sorted(line["status"] for line in new) == ["failed", "skipped", "skipped", "skipped"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")} == before
    other = invoke("video", dataset / "a", "-o", f"{out}/a/", *LITE, "--skip-existing", "--skip-frames", "2")
    assert other.exit_code == 1 and "Traceback" not in other.output
    errors = [line for line in other.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and all("made with other settings" in e and "skip_frames 1 -> 2" in e for e in errors)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")} == before, "never silently replaced"


def test_jobs_give_the_same_outputs(tmp_path, dataset, plain_run):
    out = tmp_path / "jobs"
    result = invoke("video", dataset, "-o", f"{out}/", *LITE, "--jobs", "2", "-q")
    assert result.exit_code == 1, result.output
    for rel in ("a/b/one.parquet", "a/two.parquet", "three.parquet"):
        a, b = pd.read_parquet(out / rel), pd.read_parquet(plain_run / rel)
        pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-4, rtol=1e-5)
    one_file, two_file = tmp_path / "one.parquet", tmp_path / "two.parquet"
    assert invoke("video", dataset, "-o", one_file, *LITE, "-q").exit_code == 1
    assert invoke("video", dataset, "-o", two_file, *LITE, "-q", "--jobs", "2").exit_code == 1
    a, b = pd.read_parquet(one_file), pd.read_parquet(two_file)
    assert list(a["input"]) == list(b["input"]) and list(a["Identity"]) == list(b["Identity"])
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-4, rtol=1e-5)


def test_files_from_standard_input_and_all_ok_exit_0(tmp_path, dataset):
    listing = f"{dataset / 'three.mp4'}\n{dataset / 'a' / 'two.mp4'}\n"
    out = tmp_path / "o.parquet"
    result = invoke("video", "--files-from", "-", "-o", out, *LITE, "-q", input=listing)
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(out)
    assert list(df["input"].drop_duplicates()) == [str(dataset / "three.mp4"), str(dataset / "a" / "two.mp4")]
    missing = invoke("video", "--files-from", tmp_path / "nope.txt", "-o", out, *LITE)
    assert missing.exit_code == 2 and "nope.txt" in missing.stderr


def test_images_into_an_output_folder(tmp_path, astronaut):
    src = tmp_path / "photos"
    (src / "trip").mkdir(parents=True)
    Image.fromarray(astronaut).save(src / "trip" / "a.jpg")
    Image.fromarray(astronaut[::2, ::2]).save(src / "b.png")
    (src / "trip" / "c.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "out"
    result = invoke("detect", src, "-o", f"{out}/", *LITE, "--format", "csv")
    assert result.exit_code == 1 and "c.jpg" in result.stderr
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if not p.name.startswith(".")) == [
        "_manifest.jsonl", "b.csv", "trip", "trip/a.csv"]
    a = pd.read_csv(out / "trip" / "a.csv")
    assert (a["FaceScore"] > 0.5).sum() == 1 and (a["frame"] == 0).all() and a["Identity"].iloc[0] == "Person_0"
    assert sorted(line["status"] for line in manifest(out)) == ["failed", "ok", "ok"]
    again = invoke("detect", src, "-o", f"{out}/", *LITE, "--format", "csv", "--skip-existing")
    assert sorted(line["status"] for line in manifest(out)[3:]) == ["failed", "skipped", "skipped"]
