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

from facecli.identity.cluster import LeaderClustering
from facecli.io.writers import open_writer


class RowSource(Protocol):
    def batches(self) -> Iterable[pa.RecordBatch]: ...


class Labeller(Protocol):
    """Identity labels for the rows of one output, given in file order.

    passes: 1 when ``label`` can be called on the rows as they stream; 2 when ``observe`` must
        first see every row.
    """

    passes: int

    def observe(self, batch: pa.RecordBatch) -> None: ...

    def label(self, batch: pa.RecordBatch) -> pa.Array: ...


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

    def observe(self, batch: pa.RecordBatch) -> None:
        del batch

    def label(self, batch: pa.RecordBatch) -> pa.Array:
        emb = embeddings(batch, self.columns)
        return pa.array(self.clustering.assign(emb), type=pa.string())


class NoLabels:
    """For outputs without embeddings: Identity stays empty."""

    passes = 1

    def observe(self, batch: pa.RecordBatch) -> None:
        del batch

    def label(self, batch: pa.RecordBatch) -> pa.Array:
        return pa.nulls(batch.num_rows, type=pa.string())


def embeddings(batch: pa.RecordBatch, columns: list[str]) -> np.ndarray:
    """float32[R, D] of a batch's embedding columns (NaN for rows without a face)."""
    return np.column_stack([batch.column(c).to_numpy(zero_copy_only=False) for c in columns]).astype(np.float32)


def write_output(
    output: Path, schema: pa.Schema, fmt: str, sources: list[RowSource], labeller: Labeller
) -> int:
    """Stream every source's rows, in order, into ``output`` with identity labels; return the row count.

    The file appears only when complete (temporary name, then rename); on any failure nothing is left.

    Raises:
        OSError: the output cannot be written.
    """
    label_at = schema.get_field_index("Identity")
    if labeller.passes > 1:
        for source in sources:
            for batch in source.batches():
                labeller.observe(batch)
    writer = open_writer(output, schema, fmt)
    try:
        for source in sources:
            for batch in source.batches():
                arrays = list(batch.columns)
                arrays[label_at] = labeller.label(batch)
                writer.write(pa.RecordBatch.from_arrays(arrays, schema=schema))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return writer.rows
