"""The bad-input matrix, end to end: each input is processed correctly or reported as one clear line
(in the log and the manifest), and none of them crashes the run or loses the others' results."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from facecli.cli import app
from facecli.schema import read_metadata
from tests.conftest import write_video
from tests.support.forking import fork_quietly

runner = CliRunner()
LITE = ["--models", "lite", "--device", "cpu", "--batch-size", "4"]


def invoke(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def face_frames(astronaut, n: int) -> list[np.ndarray]:
    return [np.ascontiguousarray(astronaut[10 + i : 330 + i, 80 : 400][::2, ::2]) for i in range(n)]


def write_faces(path: Path, astronaut, n: int = 6, rotation: int | None = None, pts_ms: list[int] | None = None) -> Path:
    """A real-face clip; ``pts_ms`` gives irregular timestamps.

    ``rotation`` (degrees counter-clockwise, as PyAV's ``set_display_rotation`` takes them) goes into
    the display matrix, and the frames are stored turned the other way, as a phone stores them: a
    player that applies the matrix shows the face upright.
    """
    frames = face_frames(astronaut, len(pts_ms) if pts_ms else n)
    if rotation:
        frames = [np.ascontiguousarray(np.rot90(f, k=-(rotation // 90))) for f in frames]
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        if pts_ms is not None:
            s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            s.set_display_rotation(rotation)
        for i, arr in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        for i in range(6):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def no_frames(path: Path) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.height, s.width = 32, 48
        c.start_encoding()
    return path


def manifest(folder: Path) -> dict[str, dict]:
    lines = [json.loads(line) for line in (folder / "_manifest.jsonl").read_text().splitlines()]
    return {Path(line["input"]).name: line for line in lines}


def test_video_matrix(tmp_path, astronaut):
    src = tmp_path / "vidéos du labo"
    src.mkdir()
    good = write_faces(src / "good clip ü.mp4", astronaut)
    (src / "empty.mp4").write_bytes(b"")
    (src / "text.mp4").write_text("this is not a video\n")
    whole = write_faces(tmp_path / "whole.mp4", astronaut, n=30).read_bytes()
    (src / "cut.mp4").write_bytes(whole[: len(whole) * 2 // 3])
    audio_only(src / "voice.mp4")
    no_frames(src / "blank.avi")
    write_faces(src / "phone.mp4", astronaut, rotation=90)
    write_faces(src / "vfr.mkv", astronaut, pts_ms=[0, 40, 120, 130, 400, 1000])
    os.symlink("..", src / "loop")
    out = tmp_path / "out"
    result = invoke("video", src, "-o", f"{out}/", *LITE)
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    bad = {"empty.mp4", "text.mp4", "cut.mp4", "voice.mp4", "blank.avi"}
    assert len(errors) == len(bad) and all(any(name in e for e in errors) for name in bad), errors
    assert any("symbolic link loop skipped" in line for line in result.stderr.splitlines())
    lines = manifest(out)
    assert {n for n, line in lines.items() if line["status"] == "failed"} == bad
    assert all(lines[n]["error"] and "\n" not in lines[n]["error"] and n in lines[n]["error"] for n in bad)
    assert "permission" not in lines["empty.mp4"]["error"]
    # the good, the rotated and the variable-frame-rate clips are processed correctly
    df = pd.read_parquet(out / "good clip ü.parquet")
    assert (df["FaceScore"] > 0.5).sum() == 6 and (df["input"] == str(good)).all()
    phone = pd.read_parquet(out / "phone.parquet")
    assert (phone["FrameWidth"] == 160).all() and (phone["FrameHeight"] == 160).all()
    meta = read_metadata(pq.read_schema(out / "phone.parquet"))
    assert meta["input_info"][0]["rotation"] in (90, 270)
    upright = phone[phone["FaceScore"] > 0.5]
    assert len(upright) == 6, "faces are found in every frame"
    # stored turned a quarter (eye line vertical), displayed upright: the eye line is horizontal
    assert (upright["x_45"] - upright["x_36"]).abs().min() > 3 * (upright["y_45"] - upright["y_36"]).abs().max()
    vfr = pd.read_parquet(out / "vfr.parquet")
    assert list(vfr.groupby("frame")["time_s"].first()) == pytest.approx([0, 0.04, 0.12, 0.13, 0.4, 1.0])


def test_image_matrix(tmp_path, astronaut):
    src = tmp_path / "photos"
    src.mkdir()
    Image.fromarray(astronaut[..., 0]).save(src / "grey.png")
    Image.fromarray(np.dstack([astronaut, np.full(astronaut.shape[:2], 200, np.uint8)]), "RGBA").save(src / "rgba.png")
    Image.fromarray(astronaut[..., 1].astype(np.uint16) * 257).save(src / "deep16.png")
    Image.fromarray(astronaut).convert("P").save(src / "palette.png")
    Image.fromarray(astronaut).convert("CMYK").save(src / "cmyk.jpg")
    Image.fromarray(astronaut[:1, :1]).save(src / "dot.png")
    (src / "empty.jpg").write_bytes(b"")
    (src / "note.png").write_text("not an image")
    out = tmp_path / "out"
    result = invoke("detect", src, "-o", f"{out}/", *LITE)
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = manifest(out)
    assert {n for n, line in lines.items() if line["status"] == "failed"} == {"empty.jpg", "note.png"}
    for name in ("grey", "rgba", "deep16", "palette", "cmyk"):
        df = pd.read_parquet(out / f"{name}.parquet")
        assert (df["FaceScore"] > 0.5).sum() == 1, name
    dot = pd.read_parquet(out / "dot.parquet")
    assert len(dot) == 1 and dot["FaceScore"].iloc[0] == 0 and dot["FrameWidth"].iloc[0] == 1


def test_a_huge_image_keeps_memory_bounded(tmp_path, astronaut):
    """8000 x 8000 pixels (192 MB as RGB bytes): processed, and the whole process stays small."""
    big = np.zeros((8000, 8000, 3), np.uint8)
    big[3000:3512, 3000:3512] = astronaut
    Image.fromarray(big).save(tmp_path / "huge.png", compress_level=1)
    del big
    code = (
        "import resource, sys\n"
        "from facecli.cli import main\n"
        f"sys.argv = ['facecli', 'detect', {str(tmp_path / 'huge.png')!r}, '-o', {str(tmp_path / 'o.parquet')!r},"
        " '--models', 'lite', '--device', 'cpu', '-q']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    peak_mb = int(done.stdout.split()[-1]) / 1024
    df = pd.read_parquet(tmp_path / "o.parquet")
    assert (df["FaceScore"] > 0.5).sum() == 1 and df["FrameWidth"].iloc[0] == 8000
    assert peak_mb < 3000, f"peak RSS {peak_mb:.0f} MB for one 8000x8000 image"


# ------------------------------------------------------------------------------ needs root tricks
@pytest.fixture
def shared_tmp():
    """A world-traversable folder (pytest's tmp is private to root) for runs as 'nobody'."""
    folder = Path(tempfile.mkdtemp(prefix="facecli-nobody-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def as_nobody(fn, timeout: float = 600) -> tuple[int, str]:
    """Run ``fn() -> (exit code, stderr)`` in a forked child that has dropped root for uid 65534.

    (A fresh interpreter cannot be started as 'nobody' when Python lives under root's private home.)
    The child uses one torch thread: OpenMP's thread pool does not survive a fork.
    """
    import signal
    import time

    import torch

    read_end, write_end = os.pipe()
    pid = fork_quietly()
    if pid == 0:
        status = 99
        try:
            os.close(read_end)
            torch.set_num_threads(1)
            os.setgid(65534)
            os.setuid(65534)
            code, text = fn()
            os.write(write_end, f"{code}\0{text}".encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
        time.sleep(0.2)
    else:
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the run as 'nobody' did not finish")
    with os.fdopen(read_end, "rb") as fh:
        data = fh.read().decode()
    assert data, "the child could not run"
    code, text = data.split("\0", 1)
    return int(code), text


def _unprivileged(fn):
    if os.geteuid() != 0:
        return fn()
    return as_nobody(fn)


def test_unreadable_input_and_unwritable_output_folder(shared_tmp, astronaut):
    src = shared_tmp / "in"
    src.mkdir(mode=0o755)
    good = write_faces(src / "ok.mp4", astronaut)
    locked = write_faces(src / "private.mp4", astronaut)
    good.chmod(0o644)
    locked.chmod(0o000 if os.geteuid() != 0 else 0o600)  # root: readable only by root, not 'nobody'
    out = shared_tmp / "out"
    out.mkdir()
    out.chmod(0o777)
    readonly = shared_tmp / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)

    def run():
        first = invoke("video", src, "-o", f"{out}/", *LITE)
        second = invoke("video", good, "-o", f"{readonly}/", *LITE)
        return first.exit_code * 10 + second.exit_code, first.stderr + "\0" + second.stderr

    if os.geteuid() == 0:  # 'nobody' cannot import from root's private Python: load every module first
        warm = shared_tmp / "warm"
        assert invoke("video", good, shared_tmp / "missing.mp4", "-o", f"{warm}/", *LITE).exit_code == 1
        shutil.rmtree(warm)
    code, text = _unprivileged(run)
    first, second = text.split("\0")
    assert code == 12, text
    assert [line for line in first.splitlines() if line.startswith("error:")] == [
        f"error: {locked}: permission denied"]
    assert (out / "ok.parquet").is_file() and manifest(out)["private.mp4"]["status"] == "failed"
    assert second.strip().splitlines() == [f"error: {readonly}: output folder is not writable"]


def test_disk_filling_up_mid_run(tmp_path, astronaut):
    """A real, small file system fills up: the inputs that did not fit fail with one line each,
    the outputs written before stay complete and readable, nothing else is left behind."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        if os.environ.get("FACECLI_REQUIRE_REFERENCES") == "1":
            pytest.fail(f"cannot mount a small tmpfs for the disk-full test: {mounted.stderr.decode().strip()}")
        pytest.skip("needs root to mount a small tmpfs")
    try:
        src = tmp_path / "in"
        src.mkdir()
        for k in range(8):
            write_faces(src / f"clip{k}.mp4", astronaut, n=12)
        result = invoke("video", src, "-o", f"{disk}/", *LITE)
        assert result.exit_code == 1 and "Traceback" not in result.output
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        written = sorted(p.name for p in disk.glob("*.parquet"))
        assert errors and written, (errors, written)
        assert all("No space left on device" in e for e in errors), errors
        assert len(errors) + len(written) == 8
        for name in written:
            assert len(pd.read_parquet(disk / name)) == 12, "an output that exists is complete"
        leftovers = [p.name for p in disk.iterdir() if p.name.startswith(".") and ".part-" in p.name]
        assert leftovers == [], "no temporary output file is left"
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
