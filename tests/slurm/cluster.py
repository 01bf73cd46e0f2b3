"""Drive a real SLURM cluster from tests: submit batch scripts, wait, read final states, interrupt.

The cluster is one started by ``scripts/slurm_cluster.sh`` (CI starts it; the ``slurm_cluster``
fixture starts one itself when it can), reached through its ``slurm.conf``. Every command runs with
``SLURM_CONF`` set to that file, so nothing depends on the caller's environment having it.

Jobs are written to a file with a ``#!/bin/bash`` line (``sbatch --wrap`` would run under dash) and
submitted with ``--export=ALL`` from an environment that carries the test's own: the interpreter
running the tests is ``$FACECLI_TEST_PYTHON`` in the job, and ``PYTHONPATH`` starts with this
checkout, so a job imports the same ``facecli`` as the test.

Facts this relies on (checked on SLURM 22.05, /work/shared/specs/slurm.md): ``sbatch --wait`` polls
slowly, so :meth:`Slurm.wait` polls ``squeue -h -j``; ``scontrol show job`` keeps finished jobs for
MinJobAge (300 s) and the jobcomp file keeps one line per finished run; a requeued task stays PENDING
for ~121 s unless its StartTime is moved to now.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / "scripts" / "slurm_cluster.sh"


class SlurmError(RuntimeError):
    """A SLURM command failed; the message has the command and its stderr."""


class TaskEnd(NamedTuple):
    """How one job (or array task) ended.

    state: JobState, e.g. COMPLETED, FAILED, CANCELLED, TIMEOUT.
    exit_code: the batch script's exit status (0-255); 0 when it was killed by a signal.
    signal: the signal that killed the batch script (e.g. 15, 9), 0 when it exited.
    restarts: how many times it was requeued (scontrol's Restarts; 0 when read from the jobcomp file).
    """

    state: str
    exit_code: int
    signal: int = 0
    restarts: int = 0


def parse_array_spec(spec: str) -> list[int]:
    """Task ids named by a SLURM array spec: ``"1,3,7"``, ``"0-6:2"``, ``"0-3%2"`` (throttle ignored)."""
    ids: list[int] = []
    for part in spec.split("%")[0].split(","):
        rng, _, step = part.partition(":")
        lo, _, hi = rng.partition("-")
        ids.extend(range(int(lo), int(hi or lo) + 1, int(step or 1)))
    return ids


def parse_records(text: str) -> list[dict[str, str]]:
    """``scontrol show job -o`` / jobcomp lines -> one dict of KEY=VALUE per line.

    A value runs to the next `` KEY=``; values with spaces (paths) survive.
    """
    records = []
    for line in text.splitlines():
        if "=" not in line:
            continue
        pairs = re.findall(r"(?:^|\s)([A-Za-z][\w:/]*)=(.*?)(?=\s+[A-Za-z][\w:/]*=|\s*$)", line)
        records.append(dict(pairs))
    return records


def task_end(record: Mapping[str, str]) -> TaskEnd:
    """A TaskEnd from one scontrol or jobcomp record (``ExitCode=STATUS:SIGNAL``)."""
    status, _, sig = record.get("ExitCode", "0:0").partition(":")
    return TaskEnd(record.get("JobState", "UNKNOWN"), int(status or 0), int(sig or 0),
                   int(record.get("Restarts", "0") or 0))


@dataclass
class Slurm:
    """Commands against one cluster (its ``slurm.conf``), remembering the jobs submitted through it.

    Example::

        job = slurm.submit('"$FACECLI_TEST_PYTHON" -m facecli video "$IN" -o out_$SLURM_ARRAY_TASK_ID.parquet',
                           array="0-3", workdir=tmp_path, env={"IN": str(clip)})
        slurm.wait(job, timeout=120)
        assert all(end.state == "COMPLETED" for end in slurm.states(job).values())
    """

    conf: Path
    submitted: list[str] = field(default_factory=list)
    _count: itertools.count = field(default_factory=itertools.count, repr=False)

    # --- plumbing --------------------------------------------------------------------------------

    @property
    def python(self) -> str:
        """The interpreter running the tests; jobs see it as ``$FACECLI_TEST_PYTHON``."""
        return sys.executable

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment SLURM commands run in and jobs inherit (``--export=ALL``)."""
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        env["FACECLI_TEST_PYTHON"] = sys.executable
        path = env.get("PYTHONPATH", "")
        if str(REPO) not in path.split(os.pathsep):
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), path) if p)
        env.update(extra or {})
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a SLURM client command (``sbatch``, ``squeue``, ...) against this cluster."""
        proc = subprocess.run(list(args), capture_output=True, text=True, env=self.env(), timeout=timeout)
        if check and proc.returncode != 0:
            raise SlurmError(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")
        return proc

    # --- submitting ------------------------------------------------------------------------------

    def submit(
        self,
        script: str,
        *,
        workdir: str | os.PathLike,
        array: str | None = None,
        time_limit: str | None = None,
        signal: str | None = None,
        open_mode: str | None = None,
        requeue: bool | None = None,
        output: str | None = None,
        name: str = "facecli-test",
        env: Mapping[str, str] | None = None,
        extra: Sequence[str] = (),
    ) -> str:
        """Submit ``script`` (a bash script body; a ``#!`` line is added when missing) with sbatch.

        Args:
            script: the batch script text.
            workdir: the job's working folder (``--chdir``); the script file and output go there.
            array: ``--array`` spec, e.g. ``"0-3"``, ``"1,3,7"``, ``"0-6:2"``.
            time_limit: ``--time``, e.g. ``"1:00"`` (SLURM's shortest limit is one minute).
            signal: ``--signal``, e.g. ``"B:TERM@30"`` (``B:`` sends it to the batch shell).
            open_mode: ``--open-mode``, ``"append"`` keeps the output of a requeued run.
            requeue: True -> ``--requeue``, False -> ``--no-requeue``, None -> the cluster's default.
            output: ``--output`` pattern relative to workdir (default ``slurm-%A_%a.out`` for arrays,
                ``slurm-%j.out`` otherwise); stderr goes to the same file.
            name: ``--job-name``.
            env: extra variables for the job (added to the test's environment).
            extra: any other sbatch options.

        Returns:
            The job id (for an array, the array's job id; task ids are ``f"{job}_{task}"``).
        """
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        body = script if script.startswith("#!") else "#!/bin/bash\n" + script
        path = workdir / f"job-{os.getpid()}-{next(self._count)}.sh"
        path.write_text(body if body.endswith("\n") else body + "\n")
        path.chmod(0o755)
        args = ["sbatch", "--parsable", "--export=ALL", f"--chdir={workdir}", f"--job-name={name}",
                f"--output={workdir / (output or ('slurm-%A_%a.out' if array else 'slurm-%j.out'))}"]
        if array:
            args.append(f"--array={array}")
        if time_limit:
            args.append(f"--time={time_limit}")
        if signal:
            args.append(f"--signal={signal}")
        if open_mode:
            args.append(f"--open-mode={open_mode}")
        if requeue is not None:
            args.append("--requeue" if requeue else "--no-requeue")
        args += [*extra, str(path)]
        proc = subprocess.run(args, capture_output=True, text=True, env=self.env(env), timeout=30)
        if proc.returncode != 0:
            raise SlurmError(f"sbatch {path.name}: exit {proc.returncode}: {proc.stderr.strip()}")
        job_id = proc.stdout.strip().split(";")[0]
        self.submitted.append(job_id)
        return job_id

    # --- watching --------------------------------------------------------------------------------

    def queued(self, job: str) -> list[tuple[str, str]]:
        """(job or task id, state) of what squeue still lists for ``job`` (a job, array or task id)."""
        proc = self.run("squeue", "-h", "-j", job, "-o", "%i %T", check=False)
        if proc.returncode != 0:  # "Invalid job id specified": gone from the controller
            return []
        return [tuple(line.split(None, 1)) for line in proc.stdout.splitlines() if line.strip()]

    def wait(self, job: str, timeout: float = 60, poll: float = 0.2) -> dict[int | None, TaskEnd]:
        """Poll ``squeue -h -j`` until ``job`` (a job, array or task id) is no longer listed.

        Returns:
            ``states(job)``.

        Raises:
            TimeoutError: still queued after ``timeout`` seconds (the message shows what is left).
        """
        deadline = time.monotonic() + timeout
        while True:
            left = self.queued(job)
            if not left:
                return self.states(job)
            if time.monotonic() > deadline:
                raise TimeoutError(f"SLURM job {job} still queued after {timeout:.0f} s: {left}")
            time.sleep(poll)

    def wait_state(self, job_task: str, states: set[str] | str, timeout: float = 30, poll: float = 0.1) -> str:
        """Poll squeue until ``job_task`` is in one of ``states`` (e.g. RUNNING, PENDING); return it."""
        wanted = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        while True:
            now = [state for _, state in self.queued(job_task)]
            if now and now[0] in wanted:
                return now[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"SLURM job {job_task} not in {sorted(wanted)} after {timeout:.0f} s: {now}")
            time.sleep(poll)

    def records(self, job: str) -> list[dict[str, str]]:
        """``scontrol show job -o`` records of ``job`` (one per task once the array has split)."""
        proc = self.run("scontrol", "show", "job", "-o", job, check=False)
        return parse_records(proc.stdout) if proc.returncode == 0 else []

    def states(self, job: str) -> dict[int | None, TaskEnd]:
        """The current (after :meth:`wait`: final) state of every task of ``job``.

        Returns:
            {array task id: TaskEnd}, or {None: TaskEnd} for a job that is not an array. Read from
            ``scontrol show job``; from the jobcomp file (last run of each task) once the controller
            has forgotten the job.
        """
        recs = self.records(job)
        if not recs:
            recs = self._jobcomp(job)
        out: dict[int | None, TaskEnd] = {}
        for rec in recs:
            task = rec.get("ArrayTaskId")
            if task is None:
                out[None] = task_end(rec)
            else:
                for t in parse_array_spec(task):  # a pending array is still one record
                    out[t] = task_end(rec)
        return dict(sorted(out.items(), key=lambda kv: -1 if kv[0] is None else kv[0]))

    def _jobcomp(self, job: str) -> list[dict[str, str]]:
        path = self.config().get("JobCompLoc")
        if not path or not Path(path).exists():
            return []
        base, _, task = job.partition("_")
        recs = []
        for rec in parse_records(Path(path).read_text()):
            if rec.get("ArrayJobId", rec.get("JobId")) == base and (not task or rec.get("ArrayTaskId") == task):
                recs.append(rec)
        return list({rec.get("ArrayTaskId"): rec for rec in recs}.values())  # the last run of each task

    def stdout_path(self, job_task: str) -> Path:
        """The output file of a job or array task (``"123_4"``), as SLURM expanded ``--output``."""
        recs = self.records(job_task)
        if len(recs) != 1 or "StdOut" not in recs[0]:
            raise SlurmError(f"{job_task}: scontrol shows {len(recs)} records, need one with StdOut")
        return Path(recs[0]["StdOut"])

    def config(self) -> dict[str, str]:
        """``scontrol show config`` as a dict (e.g. KillWait, MaxArraySize, JobCompLoc)."""
        out = self.run("scontrol", "show", "config").stdout
        return {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in out.splitlines()) if v}

    # --- interrupting ----------------------------------------------------------------------------

    def cancel(self, job_task: str, signal: str | None = None, batch_only: bool = False, full: bool = False) -> None:
        """``scancel`` a job or task (``"123_4"``).

        Args:
            signal: send this signal (e.g. ``"TERM"``, ``"USR1"``) instead of cancelling: the job keeps
                running unless the signal kills it. Without it: SIGCONT + SIGTERM, SIGKILL after
                KillWait, state CANCELLED.
            batch_only: ``-b``, the signal reaches the batch shell alone (as ``--signal=B:...`` does).
            full: ``-f``, the batch shell and all its children.
        """
        args = ["scancel"]
        if signal:
            args += ["-s", signal]
        if batch_only:
            args.append("-b")
        if full:
            args.append("-f")
        self.run(*args, job_task)

    def requeue(self, job_task: str, start_now: bool = True, timeout: float = 30) -> None:
        """``scontrol requeue`` a running task (SIGCONT + SIGTERM, SIGKILL after KillWait) and, with
        ``start_now``, let it start again at once rather than after its ~121 s BeginTime.

        The task reruns from the start with the same job and task id and SLURM_RESTART_COUNT
        incremented. SLURM revokes the old run's credential with one-second resolution, and a rerun
        whose new credential falls in that same second is killed at launch ("Job credential
        revoked", ExitCode 1): so StartTime is moved only once the clock has passed the second in
        which the task was seen PENDING.
        """
        self.run("scontrol", "requeue", job_task)
        if not start_now:
            return
        self.wait_state(job_task, "PENDING", timeout=timeout)
        seen = time.time()
        time.sleep(max(0.0, int(seen) + 1.05 - seen))
        self.run("scontrol", "update", f"JobId={job_task}", "StartTime=now")

    def cancel_all(self, jobs: Sequence[str] | None = None, timeout: float = 30) -> None:
        """Cancel ``jobs`` (default: all submitted through this object) and wait until none is queued."""
        live = [j for j in (self.submitted if jobs is None else jobs) if self.queued(j)]
        if not live:
            return
        self.run("scancel", *live, check=False)
        for job in live:
            self.wait(job, timeout=timeout)

    # --- the node --------------------------------------------------------------------------------

    def node_state(self) -> str:
        """``sinfo -h -o %T`` (``idle``, ``mixed``, ``allocated``, ``down``, ...)."""
        return self.run("sinfo", "-h", "-o", "%T", timeout=15).stdout.strip()


def wait_for_file(path: str | os.PathLike, timeout: float = 30, poll: float = 0.05, text: str | None = None) -> str:
    """Wait until ``path`` exists (and contains ``text``, when given); return its content.

    Jobs signal "ready" to a test this way (e.g. after installing a trap).
    """
    path = Path(path)
    deadline = time.monotonic() + timeout
    while True:
        if path.exists():
            content = path.read_text()
            if text is None or text in content:
                return content
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} not written{f' with {text!r}' if text else ''} after {timeout:.0f} s")
        time.sleep(poll)


def start_cluster(folder: Path, timeout: float = 120) -> Path:
    """Start a cluster in ``folder`` with scripts/slurm_cluster.sh; return its slurm.conf."""
    proc = subprocess.run(["bash", str(CLUSTER_SCRIPT), "start", str(folder)], capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise SlurmError(f"slurm_cluster.sh start {folder}: {proc.stderr.strip()[-2000:]}")
    match = re.search(r"^export SLURM_CONF=(\S+)$", proc.stdout, re.M)
    if not match:
        raise SlurmError(f"slurm_cluster.sh start printed no SLURM_CONF: {proc.stdout!r}")
    return Path(match.group(1))


def stop_cluster(folder: Path, timeout: float = 120) -> None:
    """Stop the cluster started in ``folder``."""
    subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop", str(folder)], capture_output=True, timeout=timeout)


def usable(conf: Path, idle_timeout: float = 20) -> str | None:
    """None when the cluster of ``conf`` answers and its node is idle (waited for), else the reason."""
    if not conf.is_file():
        return f"SLURM_CONF={conf} is not a file"
    slurm = Slurm(conf)
    deadline = time.monotonic() + idle_timeout
    while True:
        try:
            state = slurm.node_state()
        except (SlurmError, subprocess.TimeoutExpired, OSError) as exc:
            return f"sinfo does not answer for SLURM_CONF={conf}: {exc}"
        if state == "idle":
            return None
        if time.monotonic() > deadline:
            return f"node of SLURM_CONF={conf} is {state or 'not listed'}, not idle, after {idle_timeout:.0f} s"
        time.sleep(0.2)
