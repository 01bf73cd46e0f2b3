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
    def progress(self) -> Iterator["ProgressTask | None"]:
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
            yield ProgressTask(progress)


class ProgressTask:
    """One bar per input, reused across inputs."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = None

    def start(self, description: str, total: int | None) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(description, total=total or None)

    def advance(self, n: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)
