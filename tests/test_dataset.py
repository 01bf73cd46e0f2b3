"""Dataset-scale planning without models: input expansion, sharding, mirrored outputs, the manifest."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from facecli.config import ConfigError, RunConfig, Shard, parse_output
from facecli.io.inputs import VIDEO_SUFFIXES, expand_inputs, read_path_list
from facecli.io.manifest import ManifestLine, append_line, latest_ok, read_lines
from facecli.pipeline.plan import IMAGE_GROUP, mirrored_outputs, plan_run, sharded_output


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "in"
    for rel in ("b/clip 2.mp4", "a/x/ü.mov", "a/clip.mp4", "z.mkv", ".hidden/h.mp4", "a/.h.mp4", "a/notes.txt"):
        touch(root / rel)
    os.symlink("..", root / "a" / "loop")  # a symbolic-link loop inside the input folder
    os.symlink(root / "missing.mp4", root / "b" / "dangling.mp4")
    return root


def test_recursive_sorted_hidden_skipped_loops_broken(tree):
    listing = expand_inputs([str(tree)], VIDEO_SUFFIXES)
    ok = [os.path.relpath(i.path, tree) for i in listing.usable]
    assert ok == ["a/clip.mp4", "a/x/ü.mov", "b/clip 2.mp4", "z.mkv"]
    bad = [(os.path.relpath(i.path, tree), i.error) for i in listing.items if i.error]
    assert bad == [("b/dangling.mp4", "broken symbolic link")]
    assert any("symbolic link loop skipped" in n and "loop" in n for n in listing.notes)
    assert any("ignored 1 file" in n for n in listing.notes)


def test_duplicates_removed_files_from_and_stdin(tree, tmp_path, monkeypatch):
    listed = tmp_path / "list.txt"
    listed.write_text(f"{tree}/z.mkv\n\n{tree}/b/clip 2.mp4\n{tree}/a/x/ü.mov\n", encoding="utf-8")
    paths = read_path_list(str(listed))
    assert paths == [f"{tree}/z.mkv", f"{tree}/b/clip 2.mp4", f"{tree}/a/x/ü.mov"]
    listing = expand_inputs([str(tree / "b"), f"{tree}/*.mkv"], VIDEO_SUFFIXES, paths)
    names = [Path(i.path).name for i in listing.usable]
    assert names == ["clip 2.mp4", "z.mkv", "ü.mov"], "each file once, at its first place"
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a.mp4\nb.mp4\n"))
    assert read_path_list("-") == ["a.mp4", "b.mp4"]


def test_mirrored_outputs_and_name_clashes(tmp_path):
    root = tmp_path / "in"
    for rel in ("a/b/clip.mp4", "a/b/clip.mov", "c/d.mp4"):
        touch(root / rel)
    items = expand_inputs([str(root)], VIDEO_SUFFIXES).items
    out = mirrored_outputs(items, tmp_path / "out", "parquet")
    rel = sorted(str(p.relative_to(tmp_path / "out")) for p in out.values())
    assert rel == ["a/b/clip.mov.parquet", "a/b/clip.mp4.parquet", "c/d.parquet"]
    one = expand_inputs([str(root / "c" / "d.mp4")], VIDEO_SUFFIXES).items
    assert mirrored_outputs(one, tmp_path / "o", "csv") == {str(root / "c" / "d.mp4"): tmp_path / "o" / "d.csv"}


def test_shards_partition_the_inputs_and_outputs_do_not_depend_on_the_shard(tree, tmp_path):
    listing = expand_inputs([str(tree)], VIDEO_SUFFIXES)
    base = RunConfig(inputs=(str(tree),), output=tmp_path / "out", kind="video", output_is_dir=True)
    full = plan_run(base, listing)
    every = {t.output: t.sources for t in full.targets}
    for n in (1, 2, 3, 7):
        seen: dict = {}
        failures = []
        for i in range(n):
            from dataclasses import replace

            part = plan_run(replace(base, shard=Shard(i, n)), listing)
            failures += [f.path for f in part.failures]
            for t in part.targets:
                assert t.output not in seen, "an input in two shards"
                seen[t.output] = t.sources
        assert seen == every, f"the union of {n} shards is the unsharded run"
        assert sorted(failures) == sorted(f.path for f in full.failures)


def test_file_output_units_and_shard_names(tmp_path):
    images = [touch(tmp_path / f"img{i:04d}.jpg") for i in range(IMAGE_GROUP + 10)]
    listing = expand_inputs([str(tmp_path)], {".jpg"})
    cfg = RunConfig(inputs=(str(tmp_path),), output=tmp_path / "all.parquet", kind="image")
    plan = plan_run(cfg, listing)
    (target,) = plan.targets
    assert [len(u.sources) for u in target.units] == [IMAGE_GROUP, 10]
    assert target.units[1].frames[0] == IMAGE_GROUP and target.sources == tuple(str(p) for p in images)
    assert sharded_output(Path("d/all.parquet"), Shard(3, 10)) == Path("d/all.shard-3-of-10.parquet")


@pytest.mark.parametrize(
    "env, want",
    [
        ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "5", "SLURM_ARRAY_TASK_MIN": "0",
          "SLURM_ARRAY_TASK_MAX": "4"}, (4, 5)),
        ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "10"}, (6, 10)),
        ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0",
          "SLURM_ARRAY_TASK_MAX": "6", "SLURM_ARRAY_TASK_STEP": "2"}, (2, 4)),
        ({}, None),
    ],
)
def test_shard_from_slurm_arrays(env, want):
    shard = Shard.from_slurm(env)
    assert (None if shard is None else (shard.index, shard.count)) == want
    if shard is not None:
        assert f"SLURM_ARRAY_TASK_ID={env['SLURM_ARRAY_TASK_ID']}" in shard.source


def test_irregular_arrays_and_bad_shards_are_one_line_errors():
    with pytest.raises(ConfigError, match="not a regular range.*--shard"):
        Shard.from_slurm({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1",
                          "SLURM_ARRAY_TASK_MAX": "7"})  # --array=1,3,7
    for text in ("3/3", "a/b", "1/0", "-1/4"):
        with pytest.raises(ConfigError, match="--shard"):
            Shard.parse(text)
    assert Shard.parse(" 2 / 5 ") == Shard(2, 5)


def test_parse_output_folder_or_file(tmp_path):
    assert parse_output(f"{tmp_path}/new/", None) == (tmp_path / "new", True, "parquet")
    assert parse_output(str(tmp_path), "csv") == (tmp_path, True, "csv")
    assert parse_output("x/out.csv", None) == (Path("x/out.csv"), False, "csv")
    with pytest.raises(ConfigError, match="does not match"):
        parse_output("out.csv", "parquet")


def _append_many(path: str, worker: int, n: int) -> None:
    for k in range(n):
        append_line(Path(path), ManifestLine(input=f"w{worker}-{k}-" + "x" * 6000, output=None, status="ok"))


def test_manifest_lines_from_many_processes_never_interleave(tmp_path):
    path = tmp_path / "_manifest.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(path), w, 40)) for w in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    raw = path.read_text().splitlines()
    assert len(raw) == 240 and all(json.loads(line)["host"] for line in raw), "every line whole and parseable"
    assert {r["input"].split("-x")[0] for r in read_lines(path)} == {f"w{w}-{k}" for w in range(6) for k in range(40)}
    with open(path, "a") as fh:
        fh.write('{"input": "torn", "stat')  # a line cut short by a crash is ignored by readers
    assert len(list(read_lines(path))) == 240


def test_latest_ok_takes_the_last_line_of_each_output(tmp_path):
    path = tmp_path / "_manifest.jsonl"
    append_line(path, ManifestLine("a.mp4", "o/a.parquet", "ok", settings_hash="1"))
    append_line(path, ManifestLine("a.mp4", "o/a.parquet", "ok", settings_hash="2"))
    append_line(path, ManifestLine("b.mp4", None, "failed", error="b.mp4: broken"))
    assert {k: v["settings_hash"] for k, v in latest_ok(path).items()} == {"o/a.parquet": "2"}
