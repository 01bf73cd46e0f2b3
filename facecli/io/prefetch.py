"""Run an iterator in a background thread, a bounded number of items ahead."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def prefetch(
    items: Iterable[T], depth: int = 2, name: str = "facecli-prefetch", stage_name: str | None = None
) -> Iterator[T]:
    """Yield ``items`` while a thread produces the next ``depth`` of them.

    An exception raised by the producer is re-raised in the consumer at the point it
    happened; closing the generator early stops the producer. ``stage_name``: the producer's
    work is timed as that stage of its thread when a timer is active (facecli.timing).
    """
    if stage_name is not None:
        from facecli.timing import timed_iter

        items = timed_iter(items, stage_name)
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # re-raised by the consumer
            put(exc)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
