"""Sinks: a finished target's rows -> its output file, with identity labels, atomically.

Rows are processed into chunks (see :mod:`facecli.pipeline.store`) without identity labels;
when every unit of an output is done, the chunks are streamed in order into the final file and
each face gets its ``Identity`` label on the way. Labelling at the end makes labels independent
of how the work was split (resumed, or run with ``--jobs``) and lets a labeller look at the whole
output first (two passes) when it needs to.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from facecli.identity.cluster import LeaderClustering
from facecli.identity.tracks import TrackAccumulator, track_identities
from facecli.io.writers import open_writer


# A two-pass output whose rows take less than this in memory is read once, not twice (bounded
# memory: above it the rows are streamed from the chunks again)
KEEP_FIRST_PASS_BYTES = 64 << 20


class RowSource(Protocol):
    def batches(self) -> Iterable[pa.RecordBatch]: ...


class Labeller(Protocol):
    """Identity labels for the rows of one output, given in file order.

    passes: 1 when ``label`` can be called on the rows as they stream; 2 when ``observe`` must
        first see every row.
    ``source`` is the position of the unit (video) the rows come from, so per-unit numbers (track
    ids, frame numbers) of different videos in one output are never confused.
    """

    passes: int

    def observe(self, batch: pa.RecordBatch, source: int) -> None: ...

    def label(self, batch: pa.RecordBatch, source: int) -> pa.Array: ...


class LeaderLabeller:
    """py-feat's rule: leader clustering of the embeddings in row order (see identity.cluster).

    Args:
        threshold: cosine similarity needed to join an identity.
        columns: the embedding columns (``Identity_1`` ...).
    """

    passes = 1

    def __init__(self, threshold: float, columns: list[str]) -> None:
        self.clustering = LeaderClustering(threshold)
        self.columns = columns

    def observe(self, batch: pa.RecordBatch, source: int) -> None:
        del batch, source

    def label(self, batch: pa.RecordBatch, source: int) -> pa.Array:
        emb = embeddings(batch, self.columns)
        return pa.array(self.clustering.assign(emb), type=pa.string())


class TrackLabeller:
    """facecli's default for videos: one vector per face track, tracks clustered into identities by
    average linkage, never joining two faces of one frame (see facecli.identity.tracks).

    Args:
        threshold: least mean cosine similarity between two groups of tracks to be one person.
        columns: the embedding columns (``Identity_1`` ...).
    """

    passes = 2

    def __init__(self, threshold: float, columns: list[str]) -> None:
        self.threshold = threshold
        self.columns = columns
        self.accumulator = TrackAccumulator()
        self._labels: dict[int, str | None] | None = None

    @staticmethod
    def _keys(batch: pa.RecordBatch, source: int) -> tuple[np.ndarray, np.ndarray]:
        track = batch.column("track").fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        frame = batch.column("frame").to_numpy(zero_copy_only=False).astype(np.int64)
        key = np.where(track >= 0, (np.int64(source) << 32) + track, -1)
        return key, (np.int64(source) << 40) + frame

    def observe(self, batch: pa.RecordBatch, source: int) -> None:
        key, frame = self._keys(batch, source)
        self.accumulator.add(key, frame, embeddings(batch, self.columns))

    def label(self, batch: pa.RecordBatch, source: int) -> pa.Array:
        if self._labels is None:
            self.accumulator.finish()
            self._labels = track_identities(self.accumulator, self.threshold)
        key, _ = self._keys(batch, source)
        return pa.array([self._labels.get(int(k)) if k >= 0 else None for k in key.tolist()], type=pa.string())


class NoLabels:
    """For outputs without embeddings: Identity stays empty."""

    passes = 1

    def observe(self, batch: pa.RecordBatch, source: int) -> None:
        del batch, source

    def label(self, batch: pa.RecordBatch, source: int) -> pa.Array:
        return pa.nulls(batch.num_rows, type=pa.string())


def embeddings(batch: pa.RecordBatch, columns: list[str]) -> np.ndarray:
    """float32[R, D] of a batch's embedding columns (NaN for rows without a face)."""
    return np.column_stack([batch.column(c).to_numpy(zero_copy_only=False) for c in columns]).astype(np.float32)


def write_output(
    output: Path, schema: pa.Schema, fmt: str, sources: list[RowSource], labeller: Labeller
) -> int:
    """Stream every source's rows, in order, into ``output`` with identity labels; return the row count.

    Track ids, numbered per video, are renumbered to be unique within the output (the tracks of
    the second video of an output follow those of the first).
    The file appears only when complete (temporary name, then rename); on any failure nothing is left.

    Raises:
        OSError: the output cannot be written.
    """
    label_at = schema.get_field_index("Identity")
    track_at = schema.get_field_index("track")
    offsets = [0] * len(sources)
    kept: list[list[pa.RecordBatch]] | None = None  # the first pass's batches, while they are small
    if labeller.passes > 1 or (track_at >= 0 and len(sources) > 1):
        ends, kept, kept_bytes = [], [], 0
        for k, source in enumerate(sources):
            top = -1
            if kept is not None:
                kept.append([])
            for batch in source.batches():
                labeller.observe(batch, k)
                if track_at >= 0:
                    top = max(top, pc.max(batch.column(track_at)).as_py() or -1)
                if kept is not None:
                    kept_bytes += batch.nbytes
                    if kept_bytes > KEEP_FIRST_PASS_BYTES:
                        kept = None  # too big to keep: the second pass streams the chunks again
                    else:
                        kept[k].append(batch)
            ends.append(top + 1)
        offsets = [sum(ends[:k]) for k in range(len(sources))]
    writer = open_writer(output, schema, fmt)
    try:
        for k, source in enumerate(sources):
            for batch in (kept[k] if kept is not None else source.batches()):
                arrays = list(batch.columns)
                arrays[label_at] = labeller.label(batch, k)
                if track_at >= 0 and offsets[k]:
                    arrays[track_at] = pc.add(arrays[track_at], offsets[k])
                writer.write(pa.RecordBatch.from_arrays(arrays, schema=schema))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return writer.rows
