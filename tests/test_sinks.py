"""The output sink: two-pass labelling reads small outputs' chunks once, large ones twice, same file."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from facecli.io.writers import dictionary_columns
from facecli.pipeline import sinks
from facecli.pipeline.sinks import TrackLabeller, write_output

DIM = 4
SCHEMA = pa.schema([("frame", pa.int64()), ("track", pa.int64()), ("Identity", pa.string())]
                   + [(f"Identity_{i + 1}", pa.float32()) for i in range(DIM)])


class CountingSource:
    """A unit's rows, counting how often they are read."""

    def __init__(self, batches: list[pa.RecordBatch]) -> None:
        self._batches = batches
        self.reads = 0

    def batches(self):
        self.reads += 1
        yield from self._batches


def _video(people: list[np.ndarray], frames: int) -> CountingSource:
    """One track per person, every person in every frame, one batch per frame."""
    batches = []
    for f in range(frames):
        emb = np.stack(people).astype(np.float32)
        cols = [pa.array([f] * len(people), pa.int64()), pa.array(range(len(people)), pa.int64()),
                pa.nulls(len(people), pa.string())] + [pa.array(emb[:, i]) for i in range(DIM)]
        batches.append(pa.RecordBatch.from_arrays(cols, schema=SCHEMA))
    return CountingSource(batches)


def _write(path, monkeypatch, keep_bytes: int) -> tuple[pa.Table, list[int]]:
    monkeypatch.setattr(sinks, "KEEP_FIRST_PASS_BYTES", keep_bytes)
    a, b = np.eye(DIM)[0], np.eye(DIM)[1]
    sources = [_video([a, b], 5), _video([b], 3)]
    rows = write_output(path, SCHEMA, "parquet", sources, TrackLabeller(0.5, [f"Identity_{i + 1}" for i in range(DIM)]))
    assert rows == 13
    return pq.read_table(path), [s.reads for s in sources]


def test_small_outputs_are_read_once_large_ones_twice_same_rows(tmp_path, monkeypatch):
    kept, reads_kept = _write(tmp_path / "kept.parquet", monkeypatch, 64 << 20)
    streamed, reads_streamed = _write(tmp_path / "streamed.parquet", monkeypatch, 100)
    assert reads_kept == [1, 1]
    assert reads_streamed == [2, 2]
    assert kept.equals(streamed)
    df = kept.to_pandas()
    # the second video's track 0 follows the first video's tracks 0 and 1; its person is the first's b
    assert df["track"].tolist() == [0, 1] * 5 + [2] * 3
    assert df["Identity"].tolist() == ["Person_0", "Person_1"] * 5 + ["Person_1"] * 3


def test_float_columns_are_not_dictionary_encoded(tmp_path, monkeypatch):
    _write(tmp_path / "out.parquet", monkeypatch, 64 << 20)
    meta = pq.ParquetFile(tmp_path / "out.parquet").metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert dictionary_columns(SCHEMA) == ["frame", "track", "Identity"]
    assert not any("DICTIONARY" in e or "RLE_DICTIONARY" in e for e in encodings["Identity_1"])
    assert any("DICTIONARY" in e for e in encodings["track"])
