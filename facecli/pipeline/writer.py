"""Rows of each processed batch into the unit's chunk files, in order; on CUDA from a thread of its own.

On a GPU the device computes the next batch while the host turns this one's results into Arrow
rows and writes them; :class:`RowWriter` with ``threaded=True`` does that work in one background
thread, fed through a bounded queue (so results never pile up in memory). On the CPU the same
work would only take cores from the models, so it is done in place (``threaded=False``). Either
way rows reach the store in batch order, and :meth:`RowWriter.flush` returns only when every row
handed over is in the store, which is what a checkpoint needs.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import pyarrow as pa

from facecli.timing import stage
from facecli.types import FaceResults, FrameBatch

_STOP = object()


class RowWriter:
    """Writes ``make_rows(batch, results)`` to ``store`` for every batch put, in order.

    Args:
        make_rows: the batch's Arrow rows (``facecli.schema.to_record_batch`` with the run's layout).
        store: has ``write(rows)`` (a UnitStore).
        threaded: do the work in a background thread (CUDA) instead of in :meth:`put`.
        depth: batches that may wait in the queue.
    """

    def __init__(self, make_rows: Callable[[FrameBatch, FaceResults], pa.RecordBatch], store, threaded: bool,
                 depth: int = 2) -> None:
        self.make_rows = make_rows
        self.store = store
        self.threaded = threaded
        self._error: BaseException | None = None  # raised once in the main thread
        self._failed = False  # stays set: nothing more is written after a failure
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._work, name="facecli-writer", daemon=True)
            self._thread.start()

    def _write(self, batch: FrameBatch, results: FaceResults) -> None:
        with stage("rows"):
            rows = self.make_rows(batch, results)
        with stage("write"):
            self.store.write(rows)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                if not self._failed:  # after a failure the rest is dropped; put/flush re-raise it
                    self._write(*item)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                self._error, self._failed = exc, True
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def put(self, batch: FrameBatch, results: FaceResults) -> None:
        """Hand over one batch (written now, or queued for the thread: blocks while the queue is full).

        Raises:
            Whatever writing an earlier batch raised in the thread (e.g. OSError: disk full).
        """
        if not self.threaded:
            self._write(batch, results)
            return
        self._raise()
        self._queue.put((batch, results))

    def flush(self) -> None:
        """Return once every batch handed over is in the store; re-raise a failure of the thread."""
        if self.threaded:
            self._queue.join()
            self._raise()

    def close(self) -> None:
        """Stop the thread (batches still queued are written first). Never raises."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._thread = None


def writer_thread(device) -> bool:
    """Write rows from a thread of their own on this device (CUDA: the host is free while the device computes)?"""
    return device.type == "cuda"


def row_count(batch: FrameBatch, results: FaceResults) -> int:
    """Rows ``to_record_batch`` makes for a batch: one per face, one for each frame without a face."""
    import torch

    per_frame = torch.bincount(results.frame.cpu(), minlength=len(batch))
    return int(per_frame.clamp(min=1).sum())
