"""SIGTERM and SIGINT as exceptions that never land in the middle of a write.

SLURM (scancel, a time limit, preemption) sends SIGTERM and kills the job a few seconds later;
Ctrl-C sends SIGINT. Either becomes :class:`Interrupted` at once, so a run stops promptly even
inside a long model call, except inside a :func:`deferred` block (writing rows, saving a
checkpoint), where it is held until the block ends. Whatever catches it can then save a
checkpoint that is consistent with the rows on disk and exit with ``128 + signal``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Interrupted(BaseException):
    """The run was asked to stop (SIGTERM or SIGINT); ``code`` is the exit status to use."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum
        self.code = 128 + signum


_state = threading.local()
_pending: list[int] = []
_stop_event = None  # a multiprocessing Event shared with worker processes, or None


def _deferring() -> bool:
    return getattr(_state, "depth", 0) > 0


def _handler(signum: int, frame: object) -> None:
    del frame
    if _deferring():
        _pending.append(signum)
        return
    raise Interrupted(signum)


def install(stop_event=None) -> dict:
    """Turn SIGTERM and SIGINT into :class:`Interrupted` in this process (main thread only).

    Args:
        stop_event: an Event (e.g. ``multiprocessing.Manager().Event()``) that, once set, also
            interrupts the run at the next :func:`check` (how a parent stops its workers).

    Returns:
        The previous handlers, for :func:`restore`.
    """
    global _stop_event
    _stop_event = stop_event
    _pending.clear()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, _handler)
    return previous


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """:func:`install` for the block, the previous handlers back afterwards."""
    previous = install()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def check() -> None:
    """Raise :class:`Interrupted` if a stop was requested through the shared event."""
    if _stop_event is not None and not _deferring():
        try:
            stop = _stop_event.is_set()
        except (OSError, EOFError):  # the parent (and its manager) is gone: stop too
            stop = True
        if stop:
            raise Interrupted(signal.SIGTERM)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A block that a signal does not interrupt; a signal that arrived meanwhile is raised after it."""
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1
    if not _deferring() and _pending:
        signum = _pending.pop(0)
        _pending.clear()
        raise Interrupted(signum)
