"""`facecli video --overlay` and `facecli detect --overlay`, end to end with the lite set.

Each overlay is decoded back and compared with the decoded input: same frame count, size and
timestamps; pixels changed only around the face boxes of the output table; frames without faces
(blank, or skipped by --skip-frames) unchanged up to codec error. Then the dataset behaviours:
mirrored folders, --jobs, shards, --skip-existing keeping complete overlays and drawing missing
ones from the existing output, resume after an interruption while drawing, and failures that
cost the overlay but never the output.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import facecli.overlay
from facecli.cli import app
from facecli.pipeline import signals
from tests.conftest import write_video
from tests.support.overlay_checks import (
    boxes_by_frame,
    changed_pixels,
    check_overlay,
    decode,
    near_boxes,
    outline_hits,
)

LITE = ["--models", "lite", "--device", "cpu", "--batch-size", "4"]
H, W = 176, 320


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(*args) -> None:
    result = invoke(*args)
    assert result.exit_code == 0, result.output


def scene(astronaut: np.ndarray, shift: int) -> list[np.ndarray]:
    """The astronaut's head drifting right over a flat background for 4 frames, then 2 blank frames."""
    head = astronaut[10:362, 40:424][::2, ::2]  # 176 x 192
    frames = []
    for i in range(4):
        frame = np.full((H, W, 3), 96, dtype=np.uint8)
        frame[:, shift + 12 * i: shift + 192 + 12 * i] = head
        frames.append(frame)
    return frames + [np.full((H, W, 3), 96, dtype=np.uint8)] * 2


def manifest(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "_manifest.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def clips(tmp_path_factory, astronaut):
    root = tmp_path_factory.mktemp("overlay_cli") / "in"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    paths = {"one": root / "a" / "one.mp4", "two": root / "b" / "two.mov"}
    write_video(paths["one"], scene(astronaut, 10), fps=12)
    write_video(paths["two"], scene(astronaut, 60), fps=12)
    return root, paths


def test_one_video_one_overlay_with_skipped_frames(clips, tmp_path):
    _, paths = clips
    out, ov = tmp_path / "one.parquet", tmp_path / "one_overlay.mp4"
    ok("video", paths["one"], "-o", out, "--overlay", ov, "--skip-frames", "2", *LITE, "-q")
    boxes = boxes_by_frame(out, str(paths["one"]))
    assert set(boxes) == {0, 2}, "faces in the measured frames 0 and 2; 4 is blank; 1, 3, 5 skipped"
    check_overlay(ov, paths["one"], boxes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.parquet", "one_overlay.mp4"]
    # the mesh variant draws other points inside the face than the 68 landmarks, and nothing else differs
    mesh = tmp_path / "mesh"
    mesh.mkdir()
    ok("video", paths["one"], "-o", mesh / "one.parquet", "--overlay", mesh / "ov.mkv", "--overlay-mesh",
       "--skip-frames", "2", *LITE, "-q")
    check_overlay(mesh / "ov.mkv", paths["one"], boxes, time_atol=5e-4)  # Matroska: milliseconds
    plain, meshed = (decode(p)[1][0] for p in (ov, mesh / "ov.mkv"))
    x1, y1, x2, y2 = boxes[0][0].round().astype(int)
    differ = changed_pixels(plain, meshed)
    assert differ[y1:y2, x1:x2].sum() > 100 and not differ[~near_boxes(plain.shape, boxes[0])].any()


def test_folders_jobs_and_skip_existing(clips, tmp_path):
    root, paths = clips
    out, ov = tmp_path / "out", tmp_path / "ov"
    ok("video", root, "-o", f"{out}/", "--overlay", f"{ov}/", "--jobs", "2", *LITE, "-q")
    overlays = {"one": ov / "a" / "one.mp4", "two": ov / "b" / "two.mp4"}  # mirrored, always .mp4
    assert sorted(str(p.relative_to(ov)) for p in ov.rglob("*") if p.is_file()) == ["a/one.mp4", "b/two.mp4"]
    for key, table in (("one", out / "a" / "one.parquet"), ("two", out / "b" / "two.parquet")):
        boxes = boxes_by_frame(table, str(paths[key]))
        assert len(boxes) == 4
        check_overlay(overlays[key], paths[key], boxes)
    lines = manifest(out)
    assert {(line["status"], line["overlay"], line["overlay_error"]) for line in lines} == {
        ("ok", str(overlays["one"]), None), ("ok", str(overlays["two"]), None)}

    # a rerun keeps complete overlays; a missing one is drawn again from the existing output
    before = {k: p.stat().st_mtime_ns for k, p in overlays.items()}
    table_before = (out / "b" / "two.parquet").stat().st_mtime_ns
    ok("video", root, "-o", f"{out}/", "--overlay", f"{ov}/", "--skip-existing", *LITE, "-q")
    assert {k: p.stat().st_mtime_ns for k, p in overlays.items()} == before
    overlays["two"].unlink()
    ok("video", root, "-o", f"{out}/", "--overlay", f"{ov}/", "--skip-existing", *LITE, "-q")
    assert overlays["one"].stat().st_mtime_ns == before["one"]
    assert (out / "b" / "two.parquet").stat().st_mtime_ns == table_before, "the output was not remade"
    check_overlay(overlays["two"], paths["two"], boxes_by_frame(out / "b" / "two.parquet", str(paths["two"])))
    last = manifest(out)[-4:]  # two reruns, each input skipped, its overlay kept or drawn again
    assert {(line["status"], line["overlay"]) for line in last} == {
        ("skipped", str(overlays["one"])), ("skipped", str(overlays["two"]))}
    # overlays inside the input folder are never taken as inputs
    inner = root / "overlays"
    result = invoke("video", root, "-o", f"{tmp_path / 'out2'}/", "--overlay", f"{inner}/", *LITE)
    assert result.exit_code == 0, result.output
    result = invoke("video", root, "-o", f"{tmp_path / 'out2'}/", "--overlay", f"{inner}/", "--skip-existing", *LITE)
    assert result.exit_code == 0 and "2 file(s) inside the overlay folder" in result.output, result.output
    assert sorted(p.name for p in (tmp_path / "out2").rglob("*.parquet")) == ["one.parquet", "two.parquet"]
    import shutil

    shutil.rmtree(inner)


def test_shards_draw_their_own_inputs(clips, tmp_path):
    root, paths = clips
    for shard in ("0/2", "1/2"):
        ok("video", root, "-o", f"{tmp_path / 'out'}/", "--overlay", f"{tmp_path / 'ov'}/", "--shard", shard, *LITE,
           "-q")
        if shard == "0/2":
            assert [p.name for p in (tmp_path / "ov").rglob("*.mp4")] == ["one.mp4"]
    assert sorted(str(p.relative_to(tmp_path / "ov")) for p in (tmp_path / "ov").rglob("*.mp4")) == [
        "a/one.mp4", "b/two.mp4"]


def test_a_failing_overlay_keeps_the_output(clips, tmp_path):
    root, paths = clips
    ov = tmp_path / "ov"
    ov.mkdir()
    (ov / "a").write_text("a file where the overlay folder a/ should be")
    out = tmp_path / "out"
    result = invoke("video", root, "-o", f"{out}/", "--overlay", f"{ov}/", *LITE)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(ov / "a" / "one.mp4") in errors[0] and "overlay not written" in errors[0]
    assert "1 without overlay" in result.output
    assert (out / "a" / "one.parquet").is_file() and (out / "b" / "two.parquet").is_file()
    assert (ov / "b" / "two.mp4").is_file()
    by_input = {line["input"]: line for line in manifest(out)}
    assert by_input[str(paths["one"])]["status"] == "ok" and by_input[str(paths["one"])]["overlay_error"]
    assert by_input[str(paths["two"])]["overlay"] == str(ov / "b" / "two.mp4")
    assert not [p for p in ov.rglob(".*")], "no temporary file left"


def test_interrupted_while_drawing_resumes_to_the_overlay(clips, tmp_path, monkeypatch):
    _, paths = clips
    out, ov = tmp_path / "one.parquet", tmp_path / "one.mp4"

    def terminated(*args, **kwargs):
        raise signals.Interrupted(15)

    monkeypatch.setattr(facecli.overlay, "render_overlay_video", terminated)
    result = invoke("video", paths["one"], "-o", out, "--overlay", ov, *LITE, "-q")
    assert result.exit_code == 143, result.output
    assert out.is_file() and not ov.exists()
    assert (tmp_path / ".one.parquet.facecli-partial").is_dir(), "progress kept until the overlay is drawn"
    monkeypatch.undo()
    ok("video", paths["one"], "-o", out, "--overlay", ov, *LITE, "-q")
    check_overlay(ov, paths["one"], boxes_by_frame(out, str(paths["one"])))
    assert not (tmp_path / ".one.parquet.facecli-partial").exists()


def test_usage_errors(clips, tmp_path):
    root, paths = clips
    cases = [
        (["video", root, "-o", tmp_path / "all.parquet", "--overlay", tmp_path / "ov.mp4"], "one overlay file for 2"),
        (["video", paths["one"], "-o", tmp_path / "x.parquet", "--overlay", tmp_path / "ov.txt"], "must end in .mp4"),
        (["video", root, "-o", f"{tmp_path}/o/", "--overlay", tmp_path / "ov.mp4"], "give a folder for the overlays"),
        (["video", paths["one"], "-o", tmp_path / "x.parquet", "--overlay-mesh"], "--overlay-mesh needs --overlay"),
        (["detect", paths["one"], "-o", tmp_path / "x.parquet", "--overlay", paths["one"]], "is a file"),
    ]
    for args, message in cases:
        result = invoke(*args, *LITE)
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    assert sorted(os.listdir(tmp_path)) == []


def test_detect_writes_annotated_images(tmp_path, astronaut):
    src = tmp_path / "photos"
    (src / "a").mkdir(parents=True)
    Image.fromarray(astronaut[::2, ::2]).save(src / "a" / "astro.png")
    Image.fromarray(astronaut[:300, 100:400]).save(src / "crop.jpg", quality=95)
    Image.fromarray(np.full((80, 120, 3), 200, np.uint8)).save(src / "blank.png")
    for out, ov in ((tmp_path / "faces.parquet", tmp_path / "annotated"), (f"{tmp_path / 'per_image'}/",
                                                                             tmp_path / "annotated2")):
        ok("detect", src, "-o", out, "--overlay", ov, *LITE, "-q")
        assert sorted(str(p.relative_to(ov)) for p in ov.rglob("*") if p.is_file()) == [
            "a/astro.png", "blank.png", "crop.jpg"]
    table = tmp_path / "faces.parquet"
    for name in ("a/astro.png", "crop.jpg", "blank.png"):
        before = np.asarray(Image.open(src / name).convert("RGB"))
        for ov in (tmp_path / "annotated", tmp_path / "annotated2"):
            after = np.asarray(Image.open(ov / name).convert("RGB"))
            assert after.shape == before.shape
            changed = changed_pixels(before, after)
            boxes = boxes_by_frame(table, str(src / name))
            if name == "blank.png":
                assert not boxes and not changed.any()
                continue
            (face,) = boxes.values()
            assert not changed[~near_boxes(before.shape, face)].any() and outline_hits(changed, face[0]) > 0.9


def test_one_file_several_videos_with_jobs(clips, tmp_path):
    """-o FILE with two videos and --jobs 2: workers measure the videos, the main process writes the
    file and then draws both overlays from it (identity labels of the whole file)."""
    root, paths = clips
    out, ov = tmp_path / "all.parquet", tmp_path / "ov"
    ok("video", root, "-o", out, "--overlay", f"{ov}/", "--jobs", "2", *LITE, "-q")
    for key, rel in (("one", "a/one.mp4"), ("two", "b/two.mp4")):
        check_overlay(ov / rel, paths[key], boxes_by_frame(out, str(paths[key])))
