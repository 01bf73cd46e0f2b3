"""Interrupted runs resume from their last checkpoint and end identical to uninterrupted ones.

Real processes, real signals: SIGTERM (what scancel and SLURM time limits send), SIGINT and
kill -9 (a node failure), on a generated clip with the lite model set.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import write_video

BATCH = ["--batch-size", "4", "--models", "lite", "--device", "cpu"]


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory, astronaut):
    """160 frames of the astronaut moving and some blank frames, H.264 with B-frames."""
    frames = []
    for i in range(160):
        if 100 <= i < 110:
            frames.append(np.full((160, 160, 3), 90, dtype=np.uint8))
            continue
        shift = (i * 3) % 120
        frames.append(np.ascontiguousarray(astronaut[20 + shift // 2 : 340 + shift // 2, 60 + shift : 380 + shift][::2, ::2]))
    return write_video(tmp_path_factory.mktemp("resume") / "long clip é.mp4", frames, fps=25, codec="libx264")


def facecli(*args, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "facecli", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, **kwargs,
    )


def run_to_end(*args) -> subprocess.CompletedProcess:
    proc = facecli(*args)
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, long_clip):
    out = tmp_path_factory.mktemp("reference") / "ref.parquet"
    done = run_to_end("video", long_clip, "-o", out, *BATCH, "-q")
    assert done.returncode == 0, done.stderr
    return pd.read_parquet(out)


def wait_for_checkpoint(folder: Path, proc: subprocess.Popen, chunks: int = 2, timeout: float = 240) -> None:
    """Until the run has saved at least ``chunks`` chunks of its video."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        states = list(folder.glob(".*.facecli-partial/unit-*/state.json"))
        if states:
            try:
                if len(json.loads(states[0].read_text())["chunks"]) >= chunks:
                    return
            except (ValueError, KeyError, OSError):
                pass
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint appeared (run ended with {proc.poll()})")


def assert_same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=True)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_promptly_and_a_rerun_resumes_identically(tmp_path, long_clip, reference, signum):
    out = tmp_path / "out.parquet"
    args = ("video", long_clip, "-o", out, *BATCH, "--checkpoint-every", "0.2")
    proc = facecli(*args)
    wait_for_checkpoint(tmp_path, proc)
    sent = time.monotonic()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert proc.returncode == 128 + signum and "Traceback" not in err, err
    assert "run the same command again to resume" in err
    assert took < 20, f"took {took:.1f} s to stop"
    assert not out.exists(), "an interrupted output never looks complete"
    state = json.loads(next(tmp_path.glob(".out.parquet.facecli-partial/unit-*/state.json")).read_text())
    stopped_at = state["position"][0]
    assert 0 < stopped_at < 159
    again = run_to_end(*args, "-v")
    assert again.returncode == 0, again.stderr
    assert f"resumed after frame {stopped_at}" in again.stderr
    assert_same_rows(pd.read_parquet(out), reference)
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"], "the in-progress folder is gone"


def test_kill_9_into_an_output_folder_resumes_identically(tmp_path, long_clip, reference):
    out_dir = tmp_path / "out"
    args = ("video", long_clip, "-o", f"{out_dir}/", *BATCH, "--checkpoint-every", "0.2")
    proc = facecli(*args)
    wait_for_checkpoint(out_dir, proc, chunks=3)
    proc.kill()  # SIGKILL: no chance to save anything more
    proc.communicate(timeout=60)
    target = out_dir / "long clip é.parquet"
    assert not target.exists()
    again = run_to_end(*args)
    assert again.returncode == 0, again.stderr
    lines = [json.loads(line) for line in (out_dir / "_manifest.jsonl").read_text().splitlines()]
    assert [line["status"] for line in lines] == ["ok"] and lines[0]["resumed_from"] > 0
    resumed = pd.read_parquet(target)
    assert_same_rows(resumed, reference.assign(input=str(long_clip)))
    assert sorted(p.name for p in out_dir.iterdir()) == ["_manifest.jsonl", target.name]


def test_work_saved_with_other_settings_is_not_mixed_in(tmp_path, long_clip):
    out = tmp_path / "out.parquet"
    proc = facecli("video", long_clip, "-o", out, *BATCH, "--checkpoint-every", "0.2")
    wait_for_checkpoint(tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    other = run_to_end("video", long_clip, "-o", out, *BATCH, "--skip-frames", "2", "-v")
    assert other.returncode == 0 and "resumed" not in other.stderr
    df = pd.read_parquet(out)
    assert sorted(df["frame"].unique()) == list(range(0, 160, 2))
