"""Messages and progress: a rich progress bar on a terminal, plain lines otherwise.

Errors always go to stderr as one line each. Progress shows only when stderr is a terminal
and the run is not ``--quiet``, so logs from SLURM or Makefiles stay clean.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Reporter:
    """Where the pipeline reports to.

    Args:
        quiet: only errors and warnings.
        verbose: also detail lines.
        console: a rich console (stderr by default).
    """

    def __init__(self, quiet: bool = False, verbose: bool = False, console: Console | None = None) -> None:
        self.quiet = quiet
        self.verbose = verbose
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.errors: list[str] = []
        self._progress: Progress | None = None

    def error(self, line: str) -> None:
        self.errors.append(line)
        self.console.print(f"error: {line}", markup=False, style="bold red")

    def warn(self, line: str) -> None:
        self.console.print(f"warning: {line}", markup=False, style="yellow")

    def info(self, line: str) -> None:
        if not self.quiet:
            self.console.print(line, markup=False)

    def detail(self, line: str) -> None:
        if self.verbose and not self.quiet:
            self.console.print(line, markup=False)

    @property
    def show_progress(self) -> bool:
        return self.console.is_terminal and not self.quiet

    @contextlib.contextmanager
    def progress(self, total_inputs: int | None = None) -> Iterator["RunProgress | None"]:
        """A progress display for the whole run (None when not on a terminal or --quiet).

        Args:
            total_inputs: inputs the run will process (its overall bar); None: no overall bar.
        """
        if not self.show_progress:
            yield None
            return
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            yield RunProgress(progress, total_inputs)


class RunProgress:
    """The run's bars: one for all inputs, and one per input being worked on (one per worker).

    The per-input methods follow facecli.pipeline.work.Progress; ``worker`` names the process
    doing the work (0 for the main process).
    """

    def __init__(self, progress: Progress, total_inputs: int | None) -> None:
        self.progress = progress
        self.overall = progress.add_task("inputs", total=total_inputs) if total_inputs else None
        self.tasks: dict[int, object] = {}

    def input_started(self, name: str, total: int | None, worker: int = 0) -> None:
        self.input_done(worker)
        self.tasks[worker] = self.progress.add_task(name, total=total or None)

    def advance(self, frames: int, worker: int = 0) -> None:
        task = self.tasks.get(worker)
        if task is not None and frames:
            self.progress.advance(task, frames)

    def input_done(self, worker: int = 0) -> None:
        task = self.tasks.pop(worker, None)
        if task is not None:
            self.progress.remove_task(task)

    def inputs_finished(self, n: int = 1) -> None:
        if self.overall is not None:
            self.progress.advance(self.overall, n)


class WorkerProgress:
    """facecli.pipeline.work.Progress for one worker of a RunProgress."""

    def __init__(self, run: RunProgress | None, worker: int = 0) -> None:
        self.run = run
        self.worker = worker

    def input_started(self, name: str, total: int | None) -> None:
        if self.run is not None:
            self.run.input_started(name, total, self.worker)

    def advance(self, frames: int) -> None:
        if self.run is not None:
            self.run.advance(frames, self.worker)

    def input_done(self) -> None:
        if self.run is not None:
            self.run.input_done(self.worker)
