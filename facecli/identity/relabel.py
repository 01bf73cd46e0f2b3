"""Re-label the Identity column of an existing output file, streaming its row groups."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from facecli.identity.cluster import LeaderClustering
from facecli.io.writers import open_writer
from facecli.schema import METADATA_KEY


class RelabelError(Exception):
    """The input cannot be re-labelled; one line for the user."""


def _batches(path: Path) -> tuple[pa.Schema, object]:
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(str(path))
            return pf.schema_arrow, pf.iter_batches(batch_size=4096)
        if suffix == ".csv":
            import pyarrow.csv as pcsv

            reader = pcsv.open_csv(str(path), convert_options=pcsv.ConvertOptions(strings_can_be_null=True))
            return reader.schema, iter(reader)
    except (pa.ArrowInvalid, OSError) as exc:
        raise RelabelError(f"{path}: not a readable output file ({str(exc).splitlines()[0]})") from None
    raise RelabelError(f"{path}: must end in .parquet or .csv")


def relabel_file(source: Path, target: Path, threshold: float | None) -> tuple[int, int]:
    """Recompute ``Identity`` from ``Identity_*`` columns with leader clustering in row order.

    ``threshold`` None takes the default of the model set recorded in the file (0.8 if unknown).

    Returns:
        (rows written, identities found).
    """
    if not source.is_file():
        raise RelabelError(f"{source}: no such file")
    schema, batches = _batches(source)
    id_cols = [n for n in schema.names if n.startswith("Identity_")]
    if not id_cols or "Identity" not in schema.names:
        raise RelabelError(f"{source}: no Identity_* embedding columns (run with an identity model)")
    meta = dict(schema.metadata or {})
    info = json.loads(meta[METADATA_KEY]) if METADATA_KEY in meta else {}
    if threshold is None:
        threshold = float(info.get("model_set_defaults", {}).get("identity_threshold", 0.8))
    if info:
        info.setdefault("settings", {})["identity_threshold"] = threshold
        meta[METADATA_KEY] = json.dumps(info, sort_keys=True).encode()
    schema = schema.with_metadata(meta)
    label_at = schema.get_field_index("Identity")
    schema = schema.set(label_at, pa.field("Identity", pa.string()))
    fmt = "csv" if target.suffix.lower() == ".csv" else "parquet"
    clustering = LeaderClustering(threshold)
    writer = open_writer(target, schema, fmt)
    rows = 0
    try:
        for batch in batches:
            emb = np.column_stack([batch.column(c).to_numpy(zero_copy_only=False) for c in id_cols])
            labels = clustering.assign(emb.astype(np.float32))
            arrays = list(batch.columns)
            arrays[label_at] = pa.array(labels, type=pa.string())
            writer.write(pa.RecordBatch.from_arrays(arrays, schema=schema))
            rows += batch.num_rows
        writer.close()
    except pa.ArrowInvalid as exc:
        writer.abort()
        raise RelabelError(f"{source}: unreadable rows ({str(exc).splitlines()[0]})") from None
    except BaseException:
        writer.abort()
        raise
    return rows, clustering.num_identities
