"""facecli under a real SLURM scheduler: job arrays, cancellation, requeue, time limits, resubmission.

Every job runs ``facecli video`` with the interpreter and checkout of the test run. The script
``exec``s facecli, so the batch shell *is* facecli and ``--signal=B:TERM@N`` reaches it, as
docs/hpc.md recommends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import write_video
from tests.slurm.cluster import wait_for_file

LITE = "--models lite --device cpu --batch-size 4"
RUN = 'exec "$FACECLI_TEST_PYTHON" -m facecli video'


def frames_of(astronaut, n: int, shift: int = 0, size: int = 160) -> list[np.ndarray]:
    out = []
    for i in range(n):
        s = (i * 2 + shift) % 100
        crop = astronaut[20 + s // 2 : 340 + s // 2, 60 + s : 380 + s]
        out.append(np.ascontiguousarray(crop[:: 320 // size, :: 320 // size]))
    return out


def local_run(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "facecli", "video", *args], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr


def same_folder(a: Path, b: Path) -> None:
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*.parquet"))
    assert names == sorted(str(p.relative_to(b)) for p in b.rglob("*.parquet")) and names
    for name in names:
        pd.testing.assert_frame_equal(pd.read_parquet(a / name), pd.read_parquet(b / name), check_exact=True)


def manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "_manifest.jsonl").read_text().splitlines()]


def wait_for_chunks(folder: Path, n: int = 2, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for state in folder.glob("**/.*.facecli-partial/unit-*/state.json"):
            try:
                if len(json.loads(state.read_text())["chunks"]) >= n:
                    return
            except (ValueError, KeyError, OSError):
                pass
        time.sleep(0.1)
    raise AssertionError(f"no checkpoint under {folder} after {timeout} s")


@pytest.fixture(scope="module")
def clips(tmp_path_factory, astronaut):
    root = tmp_path_factory.mktemp("slurm-data") / "videos"
    for k in range(5):
        sub = root / ("group a" if k % 2 else "group b")
        sub.mkdir(parents=True, exist_ok=True)
        write_video(sub / f"clip{k}.mp4", frames_of(astronaut, 8, shift=7 * k), fps=10)
    return root


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory, astronaut):
    path = tmp_path_factory.mktemp("slurm-long") / "long.mp4"
    return write_video(path, frames_of(astronaut, 200, size=160), fps=25, codec="libx264")


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory, long_clip):
    out = tmp_path_factory.mktemp("slurm-ref") / "out"
    local_run(str(long_clip), "-o", f"{out}/", *LITE.split(), "-q")
    return out


def test_array_union_equals_one_plain_run_and_skip_resubmission_is_quick(slurm, tmp_path, clips):
    plain = tmp_path / "plain"
    local_run(str(clips), "-o", f"{plain}/", *LITE.split(), "-q")
    out = tmp_path / "array"
    script = f'{RUN} "$CLIPS" -o "$OUT/" {LITE}'  # not --quiet: the log says which shard a task is
    env = {"CLIPS": str(clips), "OUT": str(out)}
    job = slurm.submit(script, array="1-3", workdir=tmp_path / "jobs", env=env)  # ids need not start at 0
    ends = slurm.wait(job, timeout=300)
    assert [e.state for e in ends.values()] == ["COMPLETED"] * 3, ends
    same_folder(out, plain)
    lines = manifest(out)
    assert sorted(line["shard"] for line in lines) == ["0/3", "0/3", "1/3", "1/3", "2/3"]
    assert all(line["status"] == "ok" for line in lines)
    logs = sorted((tmp_path / "jobs").glob("slurm-*.out"))
    assert any("shard 1/3 (SLURM_ARRAY_TASK_ID=2 of array 1-3)" in p.read_text() for p in logs)
    started = time.monotonic()
    again = slurm.submit(script + " --skip-existing", array="1-3", workdir=tmp_path / "jobs2", env=env)
    assert [e.state for e in slurm.wait(again, timeout=120).values()] == ["COMPLETED"] * 3
    took = time.monotonic() - started
    assert [line["status"] for line in manifest(out)[5:]] == ["skipped"] * 5
    assert took < 60, f"a --skip-existing resubmission took {took:.0f} s"


def test_requeued_task_resumes_and_ends_identical(slurm, tmp_path, long_clip, long_reference):
    out = tmp_path / "out"
    script = f'{RUN} "$CLIP" -o "$OUT/" {LITE} --checkpoint-every 0.2 -v'
    job = slurm.submit(script, workdir=tmp_path, env={"CLIP": str(long_clip), "OUT": str(out)},
                       requeue=True, open_mode="append")
    wait_for_chunks(out)
    slurm.requeue(job)  # what preemption does: SIGTERM, then the task runs again from its script
    end = slurm.wait(job, timeout=600)[None]
    assert end.state == "COMPLETED" and end.restarts == 1, end
    log = slurm.stdout_path(job).read_text()
    assert "terminated" in log and "resumed after frame" in log, log[-2000:]
    same_folder(out, long_reference)
    assert [line["status"] for line in manifest(out)] == ["ok"]


def test_cancelled_task_resubmitted_resumes_and_ends_identical(slurm, tmp_path, long_clip, long_reference):
    out = tmp_path / "out"
    script = f'{RUN} "$CLIP" -o "$OUT/" {LITE} --checkpoint-every 0.2 -v'
    env = {"CLIP": str(long_clip), "OUT": str(out)}
    job = slurm.submit(script, array="0", workdir=tmp_path / "a", env=env)
    wait_for_chunks(out)
    slurm.cancel(f"{job}_0")
    assert slurm.wait(job, timeout=60)[0].state == "CANCELLED"
    assert not list(out.glob("*.parquet")), "a cancelled run leaves no output that looks complete"
    again = slurm.submit(script, array="0", workdir=tmp_path / "b", env=env)
    assert slurm.wait(again, timeout=600)[0].state == "COMPLETED"
    assert "resumed after frame" in next((tmp_path / "b").glob("slurm-*.out")).read_text()
    same_folder(out, long_reference)


def test_time_limit_warning_signal_checkpoints_and_resubmission_resumes(slurm, tmp_path, astronaut, featv2_weights):
    """--time=1:00 with --signal=B:TERM@20: facecli gets SIGTERM 20-50 s before the limit, saves its
    checkpoint and exits 143 well before SIGKILL; the resubmitted job resumes (about 2-4 minutes).

    The SIGTERM comes 10-40 s after the start, so the clip must take facecli well over 40 s: 500
    frames take 45-130 s here (300 were enough until faster multitask and follower code finished
    them in 27 s). The reference runs before the resubmission, not beside it: two processes with
    two torch threads each on two cores ran 4x slower (640 s for this test)."""
    clip = write_video(tmp_path / "slow.mp4", frames_of(astronaut, 500, size=160), fps=25)
    opts = f"--models feat-v2 --weights-dir {featv2_weights} --device cpu --batch-size 2 --checkpoint-every 0.2 -v"
    ref = tmp_path / "ref"
    out = tmp_path / "out"
    script = f'{RUN} "$CLIP" -o "$OUT/" {opts}'
    job = slurm.submit(script, workdir=tmp_path / "a", env={"CLIP": str(clip), "OUT": str(out)},
                       time_limit="1:00", signal="B:TERM@20")
    end = slurm.wait(job, timeout=200)[None]
    log = next((tmp_path / "a").glob("slurm-*.out")).read_text()
    assert end.exit_code == 143 and "terminated" in log, (end, log[-2000:])
    assert not list(out.glob("*.parquet"))
    local_run(str(clip), "-o", f"{ref}/", *opts.split())
    again = slurm.submit(script, workdir=tmp_path / "b", env={"CLIP": str(clip), "OUT": str(out)})
    assert slurm.wait(again, timeout=900)[None].state == "COMPLETED"
    assert "resumed after frame" in next((tmp_path / "b").glob("slurm-*.out")).read_text()
    same_folder(out, ref)
