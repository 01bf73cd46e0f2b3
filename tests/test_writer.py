"""RowWriter: rows reach the store in order, from a thread on CUDA; failures surface in the main thread."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest
import torch

from facecli.pipeline.writer import RowWriter, row_count, writer_thread
from facecli.types import FaceResults, FrameBatch


class _Store:
    def __init__(self, fail_at: int | None = None) -> None:
        self.rows: list[int] = []
        self.fail_at = fail_at

    def write(self, rows: pa.RecordBatch) -> None:
        value = rows.column(0)[0].as_py()
        if value == self.fail_at:
            raise OSError(28, "No space left on device")
        self.rows.append(value)


def _batch(k: int) -> tuple[FrameBatch, FaceResults]:
    batch = FrameBatch(images=torch.zeros(2, 3, 4, 4, dtype=torch.uint8), index=(2 * k, 2 * k + 1),
                       time_s=(0.0, 0.0), sources=("a", "a"))
    results = FaceResults(frame=torch.tensor([1, 1, 1]), boxes=torch.zeros(3, 4), scores=torch.ones(3))
    return batch, results


def _rows(batch: FrameBatch, results: FaceResults) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({"first": [batch.index[0]]})


@pytest.mark.parametrize("threaded", [False, True])
def test_rows_in_order_and_flush(threaded):
    store = _Store()
    writer = RowWriter(_rows, store, threaded=threaded, depth=2)
    for k in range(20):
        writer.put(*_batch(k))
    writer.flush()
    assert store.rows == [2 * k for k in range(20)]
    writer.close()
    writer.close()  # twice is harmless


def test_a_failure_in_the_thread_is_raised_in_the_main_thread():
    store = _Store(fail_at=6)
    writer = RowWriter(_rows, store, threaded=True, depth=1)
    with pytest.raises(OSError, match="No space"):
        for k in range(10):
            writer.put(*_batch(k))
        writer.flush()
    writer.close()
    assert store.rows == [0, 2, 4]  # nothing after the failure


def test_row_count_and_thread_choice():
    batch, results = _batch(0)
    assert row_count(batch, results) == 4  # three faces in frame 1, one empty row for frame 0
    assert writer_thread(torch.device("cuda")) and not writer_thread(torch.device("cpu"))


def test_engine_with_the_writer_thread_writes_the_same_rows(tmp_path, monkeypatch, astronaut):
    """The CUDA path (rows written from a thread, frames pinned) is the CPU path with the thread: forced here."""
    from typer.testing import CliRunner

    from facecli.cli import app
    from tests.conftest import write_video

    frames = [astronaut[i * 8 : 256 + i * 8, 100:356].copy() for i in range(10)]
    clip = write_video(tmp_path / "clip.mp4", frames, fps=10)
    args = ["video", str(clip), "--models", "lite", "--device", "cpu", "--batch-size", "3", "-q"]
    plain = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "plain.parquet")])
    assert plain.exit_code == 0, plain.output
    monkeypatch.setattr("facecli.pipeline.work.writer_thread", lambda device: True)
    threaded = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "threaded.parquet")])
    assert threaded.exit_code == 0, threaded.output
    a, b = pd.read_parquet(tmp_path / "plain.parquet"), pd.read_parquet(tmp_path / "threaded.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert (a["FaceScore"] > 0).sum() >= 8
