"""The SLURM test infrastructure itself, on a real cluster: array task variables, job environment,
scancel's SIGTERM, requeue with SLURM_RESTART_COUNT, on-demand signals. A few seconds in all."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.slurm.cluster import (REPO, SlurmError, TaskEnd, parse_array_spec, parse_records, task_end,
                                 wait_for_file)

# what a task records about itself: the SLURM_* variables, and which interpreter and facecli it would use
RECORD_ENV = r"""
out=task-$SLURM_ARRAY_TASK_ID.env
env | grep -E '^(SLURM_ARRAY_[A-Z_]+|SLURM_JOB_ID|HF_HUB_OFFLINE|FACECLI_TEST_PYTHON)=' > "$out.tmp"
"$FACECLI_TEST_PYTHON" -c 'import sys, facecli; print("PY=" + sys.executable); print("FACECLI=" + facecli.__file__)' >> "$out.tmp"
mv "$out.tmp" "$out"
"""


def _read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_parse_array_spec_and_records():
    assert parse_array_spec("1,3,8-12:4") == [1, 3, 8, 12]
    assert parse_array_spec("0-6:2") == [0, 2, 4, 6]
    assert parse_array_spec("0-3%2") == [0, 1, 2, 3]
    rec = parse_records("JobId=7 ArrayJobId=5 ArrayTaskId=3 JobState=CANCELLED Reason=None ExitCode=0:15 "
                        "WorkDir=/tmp/a dir/x StdOut=/tmp/o TRES=cpu=1,node=1 Restarts=1")[0]
    assert rec["WorkDir"] == "/tmp/a dir/x" and rec["TRES"] == "cpu=1,node=1" and rec["ArrayTaskId"] == "3"
    assert task_end(rec) == TaskEnd("CANCELLED", 0, 15, 1)


def test_array_tasks_see_their_ids_and_the_test_environment(slurm, tmp_path, monkeypatch):
    """Irregular ids plus a stepped range: COUNT/MIN/MAX describe the set, the ids are not 0..COUNT-1."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = "1,3,8-12:4"
    job = slurm.submit(RECORD_ENV, array=spec, workdir=tmp_path)
    ends = slurm.wait(job, timeout=60)
    assert ends == {t: TaskEnd("COMPLETED", 0, 0, 0) for t in (1, 3, 8, 12)}, ends
    envs = {int(p.stem.split("-")[1]): _read_env(p) for p in tmp_path.glob("task-*.env")}
    assert sorted(envs) == parse_array_spec(spec) == [1, 3, 8, 12]
    for task, env in envs.items():
        assert env["SLURM_ARRAY_JOB_ID"] == job and env["SLURM_ARRAY_TASK_ID"] == str(task)
        assert (env["SLURM_ARRAY_TASK_COUNT"], env["SLURM_ARRAY_TASK_MIN"], env["SLURM_ARRAY_TASK_MAX"]) == \
            ("4", "1", "12")
        # SLURM_ARRAY_TASK_STEP is 4 here (the last range's step) although 1 -> 3 is not a step of 4:
        # a shard number must come from the id's position in the spec, not from (id - MIN) / STEP
        assert env["HF_HUB_OFFLINE"] == "1"
        assert env["PY"] == env["FACECLI_TEST_PYTHON"] == slurm.python
        assert Path(env["FACECLI"]).resolve() == (REPO / "facecli" / "__init__.py").resolve()
    assert len({env["SLURM_JOB_ID"] for env in envs.values()}) == 4  # every task has its own job id


def test_stepped_range_reports_its_step(slurm, tmp_path):
    job = slurm.submit(RECORD_ENV, array="0-6:2", workdir=tmp_path)
    assert set(slurm.wait(job, timeout=60)) == {0, 2, 4, 6}
    for task in (0, 2, 4, 6):
        env = _read_env(tmp_path / f"task-{task}.env")
        assert [env[f"SLURM_ARRAY_TASK_{k}"] for k in ("COUNT", "MIN", "MAX", "STEP")] == ["4", "0", "6", "2"]


WAIT_FOR_TERM = r"""
if [ "$SLURM_ARRAY_TASK_ID" = 0 ]; then exit 0; fi
# builtins only in the handler: a child started there could be killed by the SIGTERM itself
trap 'echo "$EPOCHREALTIME" > got-term; exit 143' TERM
echo ready > ready
sleep 120 &
wait
echo "no signal" > got-term
"""


def test_scancel_of_one_task_sends_sigterm_before_sigkill(slurm, tmp_path):
    job = slurm.submit(WAIT_FOR_TERM, array="0-1", workdir=tmp_path)
    wait_for_file(tmp_path / "ready", timeout=30)
    kill_wait = int(slurm.config()["KillWait"].split()[0])
    sent = time.time()
    slurm.cancel(f"{job}_1")
    ends = slurm.wait(job, timeout=kill_wait + 20)
    assert ends[0] == TaskEnd("COMPLETED", 0, 0, 0) and ends[1].state == "CANCELLED", ends
    got = wait_for_file(tmp_path / "got-term", timeout=5).strip()
    assert got != "no signal"
    delay = float(got) - sent
    assert -0.5 < delay < kill_wait, f"SIGTERM came {delay:.2f} s after scancel (KillWait {kill_wait} s)"


REQUEUE_ONCE = r"""
echo "run restart=${SLURM_RESTART_COUNT:-absent} task=$SLURM_ARRAY_TASK_ID job=$SLURM_ARRAY_JOB_ID"
if [ -z "$SLURM_RESTART_COUNT" ]; then
  trap 'exit 143' TERM
  echo ready > ready
  sleep 120 &
  wait
fi
"""


def test_requeued_task_restarts_with_restart_count_and_appends_output(slurm, tmp_path):
    job = slurm.submit(REQUEUE_ONCE, array="5", workdir=tmp_path, requeue=True, open_mode="append",
                       output="out-%a.txt")
    wait_for_file(tmp_path / "ready", timeout=30)
    slurm.requeue(f"{job}_5")
    ends = slurm.wait(job, timeout=60)
    assert ends == {5: TaskEnd("COMPLETED", 0, 0, 1)}, ends
    assert slurm.stdout_path(f"{job}_5") == tmp_path / "out-5.txt"
    lines = (tmp_path / "out-5.txt").read_text().splitlines()  # both runs: --open-mode=append
    assert [line for line in lines if line.startswith("run ")] == [
        f"run restart=absent task=5 job={job}", f"run restart=1 task=5 job={job}"]
    assert any("DUE TO JOB REQUEUE" in line for line in lines)  # slurmstepd's note between the runs


def test_no_requeue_job_refuses_requeue(slurm, tmp_path):
    job = slurm.submit("sleep 60", workdir=tmp_path, requeue=False)
    slurm.wait_state(job, "RUNNING")
    with pytest.raises(SlurmError, match="requeue"):
        slurm.requeue(job)
    slurm.cancel(job)
    assert slurm.wait(job, timeout=30)[None].state == "CANCELLED"


SIGNAL_BATCH_SHELL = r"""
trap 'echo usr1 >> got-usr1' USR1
echo ready > ready
for i in $(seq 100); do [ -e got-usr1 ] && exit 0; sleep 0.1; done
exit 3
"""


def test_signal_to_the_batch_shell_does_not_end_the_job(slurm, tmp_path):
    """``scancel -b -s SIG``: the cheap stand-in for a ``--signal=B:TERM@N`` pre-limit warning."""
    job = slurm.submit(SIGNAL_BATCH_SHELL, workdir=tmp_path)
    wait_for_file(tmp_path / "ready", timeout=30)
    slurm.cancel(job, signal="USR1", batch_only=True)
    assert slurm.wait(job, timeout=30) == {None: TaskEnd("COMPLETED", 0, 0, 0)}
    assert (tmp_path / "got-usr1").read_text() == "usr1\n"
