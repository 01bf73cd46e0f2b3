"""``--jobs N``: N tasks at once, each worker a process with its own models and 1/N of the CPU threads.

Workers come from joblib's process executor (loky). Each loads the model set once, does whole
tasks (an output, or a group of single-image outputs, or units of the one output of ``-o FILE``)
and reports progress through a queue that a thread of the main process shows as one bar per
worker plus the run's overall bar. Results do not depend on which worker did what: every
output is made by the same code as with ``--jobs 1``.

Stopping: SIGTERM/SIGINT reach the workers directly from SLURM or the terminal; a signal to the
main process alone sets a shared stop event that workers check between batches. Either way each
worker saves its checkpoint and the main process exits non-zero once they have.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, wait
from multiprocessing.managers import SyncManager

import torch

from facecli.pipeline import signals
from facecli.pipeline.store import StoreBusy, TargetStore
from facecli.pipeline.work import InputOutcome, RunContext, process_target

STOP_GRACE_S = 20.0  # how long the main process waits for workers to save their checkpoints

_worker: dict = {}


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _init_worker(ctx: RunContext, threads: int, events, stop, load_models: Callable) -> None:
    torch.set_num_threads(threads)
    signals.install(stop)
    _worker.update(ctx=ctx, events=events, models=load_models())


class _QueueProgress:
    """facecli.pipeline.work.Progress that forwards to the main process."""

    def __init__(self, events) -> None:
        self.events = events
        self.pid = os.getpid()

    def _send(self, *event) -> None:
        try:
            self.events.put((self.pid, *event))
        except (OSError, EOFError):  # the main process is gone or stopping: progress no longer matters
            pass

    def input_started(self, name: str, total: int | None) -> None:
        self._send("start", name, total)

    def advance(self, frames: int) -> None:
        self._send("advance", frames)

    def input_done(self) -> None:
        self._send("done")


def _work(task) -> list[InputOutcome]:
    from facecli.pipeline.engine import run_task

    return run_task(_worker["ctx"], _worker["models"], task, _QueueProgress(_worker["events"]))


def default_loader(ctx: RunContext) -> Callable:
    """Loads the run's model set in a worker (the set already chosen, so no second 'auto' probe)."""
    from dataclasses import replace

    from facecli.models.sets import load_model_set

    return functools.partial(load_model_set, replace(ctx.config, models=ctx.info.name, jobs=1))


def run_parallel(ctx: RunContext, tasks: list, jobs: int, bar, load_models: Callable | None) -> Iterator[InputOutcome]:
    """Outcomes of every task, in the order tasks finish.

    Raises:
        signals.Interrupted: after the workers have saved their checkpoints (or STOP_GRACE_S passed).
    """
    from joblib.externals.loky.process_executor import ProcessPoolExecutor

    manager = SyncManager()
    manager.start(_ignore_sigint)
    events, stop = manager.Queue(), manager.Event()
    from facecli.models.sets import cpu_budget

    threads = max(1, cpu_budget() // jobs)
    loader = load_models or default_loader(ctx)
    pump = _Pump(events, bar)
    pump.start()
    executor = ProcessPoolExecutor(
        max_workers=jobs, initializer=_init_worker, initargs=(ctx, threads, events, stop, loader)
    )
    # the one output of `-o FILE`: its lock is held here while workers process its units
    shared = {t.targets[0].output: t.targets[0] for t in tasks if t.kind == "units"}
    held: dict = {}
    pending_units: dict = {}
    futures = {}
    try:
        for out, target in shared.items():
            store = TargetStore(out, ctx.fingerprint(target))
            target.output.parent.mkdir(parents=True, exist_ok=True)
            try:
                store.open()
            except StoreBusy as exc:
                for task in [t for t in tasks if t.kind == "units" and t.targets[0].output == out]:
                    tasks.remove(task)
                yield from (InputOutcome(s, None, "failed", str(exc)) for s in target.sources)
                continue
            held[out] = store
            pending_units[out] = {"left": sum(1 for t in tasks if t.kind == "units" and t.targets[0].output == out),
                                  "failed": []}
        for task in tasks:
            futures[executor.submit(_work, task)] = task
        while futures:
            done, _ = wait(list(futures), timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                task = futures.pop(future)
                outcomes = future.result()
                if task.kind != "units":
                    yield from outcomes
                    continue
                out = task.targets[0].output
                state = pending_units[out]
                state["left"] -= 1
                state["failed"] += [o for o in outcomes if o.status != "ok"]
                if state["left"] == 0:
                    yield from _finish_shared(ctx, shared[out], held.pop(out), state["failed"])
    except signals.Interrupted:
        stop.set()
        deadline = time.monotonic() + STOP_GRACE_S
        for future in list(futures):
            try:
                future.exception(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - timed out or broken: nothing more to save
                pass
        raise
    finally:
        for store in held.values():
            store.release()
        executor.shutdown(wait=False, kill_workers=True)
        pump.stop()
        manager.shutdown()


def _finish_shared(ctx: RunContext, target, store: TargetStore, failed: list[InputOutcome]) -> list[InputOutcome]:
    """Write the one output of ``-o FILE`` from the units the workers finished."""
    done_positions = [u.position for u in target.units if store.unit(u.position, ctx.chunk_schema).load().done]
    failed_inputs = {o.input for o in failed}
    outcomes = process_target(ctx, None, target, _NoBar(), done_positions, store=store, finalize=True)
    return failed + [o for o in outcomes if o.input not in failed_inputs]


class _NoBar:
    def input_started(self, name, total):
        pass

    def advance(self, frames):
        pass

    def input_done(self):
        pass


class _Pump(threading.Thread):
    """Moves worker progress events onto the main process's bars."""

    def __init__(self, events, bar) -> None:
        super().__init__(name="facecli-progress", daemon=True)
        self.events = events
        self.bar = bar
        self.workers: dict[int, int] = {}
        self._stop_flag = threading.Event()

    def run(self) -> None:
        import queue

        while not self._stop_flag.is_set():
            try:
                pid, kind, *args = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            except (OSError, EOFError):
                return
            if self.bar is None:
                continue
            worker = self.workers.setdefault(pid, len(self.workers) + 1)
            if kind == "start":
                self.bar.input_started(args[0], args[1], worker)
            elif kind == "advance":
                self.bar.advance(args[0], worker)
            elif kind == "done":
                self.bar.input_done(worker)

    def stop(self) -> None:
        self._stop_flag.set()
        self.join(timeout=2)
