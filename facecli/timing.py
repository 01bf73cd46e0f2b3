"""Optional per-stage timing of the real pipeline, for ``facecli bench``.

The engine and the model sets mark their stages with ``with stage("detect"):``. Without an
active :class:`StageTimer` (every normal run) that is a shared no-op context: one global read
and no clock call. ``facecli bench`` activates a timer around a real run; stages nest by the
``with`` blocks they sit in, per thread, so ``analyze`` > ``multitask`` is reported as the path
``analyze/multitask`` and time spent in the decode thread is kept apart from the main thread's.
Counters (``count("frames detected", n)``) add up events the same way, for the report.

On CUDA the timer synchronises the device when a stage starts and ends (only while timing), so
kernels queued by one stage are not billed to the next.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from torch import nn

T = TypeVar("T")
_END = object()
_active: "StageTimer | None" = None
_NOTHING = contextlib.nullcontext()


@dataclass(frozen=True)
class StageTotal:
    """Accumulated time of one stage path (e.g. ``analyze/multitask``)."""

    path: str
    seconds: float  # wall time inside the stage, summed over calls (children included)
    calls: int
    thread: str  # the thread it ran in ("main" or the worker thread's name)
    forward: bool = False  # a network's forward pass (see StageTimer.watch)


class StageTimer:
    """Accumulates wall time per stage path and thread.

    Args:
        sync: called at every stage boundary (``torch.cuda.synchronize`` on CUDA), or None.
    """

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.sync = sync
        self._lock = threading.Lock()
        self._local = threading.local()
        self._totals: dict[tuple[str, str], list] = {}  # (thread, path) -> [seconds, calls, forward]
        self._counts: dict[str, int] = {}

    def begin(self, name: str, forward: bool = False) -> None:
        """Enter stage ``name`` (nested in this thread's current stage). ``forward``: a network's
        forward pass, counted in :meth:`forward_seconds`."""
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        if self.sync is not None:
            self.sync()
        stack.append((name, forward, time.perf_counter()))

    def end(self) -> None:
        """Leave the current stage of this thread."""
        if self.sync is not None:
            self.sync()
        now = time.perf_counter()
        stack = self._local.stack
        path = "/".join(n for n, _, _ in stack)
        _, forward, start = stack.pop()
        thread = threading.current_thread()
        key = ("main" if thread is threading.main_thread() else thread.name, path)
        with self._lock:
            total = self._totals.setdefault(key, [0.0, 0, forward])
            total[0] += now - start
            total[1] += 1

    @contextlib.contextmanager
    def stage(self, name: str, forward: bool = False) -> Iterator[None]:
        self.begin(name, forward)
        try:
            yield
        finally:
            self.end()

    def totals(self) -> list[StageTotal]:
        """Every stage path seen, in the order first finished (children before their parent)."""
        with self._lock:
            return [StageTotal(path, s, int(c), thread, bool(f)) for (thread, path), (s, c, f) in self._totals.items()]

    def watch(self, networks: Mapping[str, nn.Module]) -> list:
        """Time every call of each network's forward as a stage of its name (nested where it is
        called); returns the hook handles (``handle.remove()`` stops it)."""
        handles = []
        for name, net in networks.items():
            handles.append(net.register_forward_pre_hook(lambda *_, n=name: self.begin(n, forward=True)))
            handles.append(net.register_forward_hook(lambda *_: self.end(), always_call=True))
        return handles

    def add(self, name: str, n: int) -> None:
        """Add ``n`` to counter ``name``."""
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n

    def counts(self) -> dict[str, int]:
        """Every counter, by name."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._totals.clear()
            self._counts.clear()


def stage(name: str):
    """A context manager timing ``name`` when a timer is active, else a shared no-op."""
    timer = _active
    return _NOTHING if timer is None else timer.stage(name)


def count(name: str, n: int = 1) -> None:
    """Add ``n`` to counter ``name`` of the active timer; nothing without one."""
    timer = _active
    if timer is not None:
        timer.add(name, n)


def timed_iter(items: Iterable[T], name: str) -> Iterator[T]:
    """``items``, with the wait for each next item timed as stage ``name`` when a timer is active."""
    if _active is None:
        yield from items
        return
    it = iter(items)
    while True:
        with stage(name):
            item = next(it, _END)
        if item is _END:
            return
        yield item


@contextlib.contextmanager
def timing(timer: StageTimer) -> Iterator[StageTimer]:
    """Make ``timer`` the active one for the duration (not re-entrant; one timer at a time)."""
    global _active
    previous, _active = _active, timer
    try:
        yield timer
    finally:
        _active = previous


def active() -> StageTimer | None:
    """The active timer, or None."""
    return _active
