"""Reading a facecli output dataset for identity clustering: inputs, checks, the first pass.

The first pass reads only the columns it needs (``Identity_*``, ``frame``, ``input``,
``track``) batch by batch with pyarrow and reduces each file to per-item sums (an item is a
track, keyed by (input, track), or an untracked face), same-frame pairs, and one item number
per row: memory O(items x dim + rows), never a whole file's columns.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from facecli.identity.tracks import TrackAccumulator
from facecli.schema import read_metadata

SUFFIXES = (".parquet", ".csv")
MANIFEST = "_manifest.jsonl"
BATCH_ROWS = 65_536


class RelabelError(Exception):
    """An expected failure: one line for the user, naming the file and the reason."""


@dataclass(frozen=True)
class InputFile:
    path: Path  # the file to read
    rel: Path  # where it goes below an output folder


def expand_inputs(specs: list[str]) -> list[InputFile]:
    """Files, folders (recursive; ``_manifest.jsonl`` first) and globs, in the order given.

    Raises:
        RelabelError: a path that does not exist, nothing found, or two inputs that would land
            on the same relative output path.
    """
    found: list[InputFile] = []
    for spec in specs:
        path = Path(spec)
        if any(c in spec for c in "*?[") and not path.exists():
            base = _glob_base(spec)
            hits = sorted(Path(p) for p in glob.glob(spec, recursive=True))
            found += [InputFile(p, p.relative_to(base)) for p in hits if p.is_file() and _is_data(p)]
        elif path.is_dir():
            found += _folder(path)
        elif path.is_file():
            found.append(InputFile(path, Path(path.name)))
        else:
            raise RelabelError(f"{spec}: no such file or folder")
    seen: dict[Path, InputFile] = {}
    rels: dict[Path, Path] = {}
    out = []
    for item in found:
        key = item.path.resolve()
        if key in seen:
            continue
        if item.rel in rels:
            raise RelabelError(f"{item.path} and {rels[item.rel]} would both be written to {item.rel}")
        seen[key], rels[item.rel] = item, item.path
        out.append(item)
    if not out:
        raise RelabelError(f"{' '.join(specs)}: no .parquet or .csv output files found")
    return out


def _glob_base(spec: str) -> Path:
    """The folder part of a glob before its first wildcard (relative paths start there)."""
    fixed: list[str] = []
    for part in Path(spec).parts[:-1]:
        if any(c in part for c in "*?["):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _is_data(p: Path) -> bool:
    return p.suffix.lower() in SUFFIXES and not p.name.startswith(("_", "."))


def _folder(root: Path) -> list[InputFile]:
    manifest = root / MANIFEST
    if not manifest.is_file():
        files = sorted(p for p in root.rglob("*") if p.is_file() and _is_data(p) and not _hidden(p, root))
        return [InputFile(p, p.relative_to(root)) for p in files]
    out = []
    for n, line in enumerate(manifest.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            output, status = entry["output"], entry["status"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise RelabelError(f"{manifest}: line {n} is not a JSON object with 'output' and 'status'") from None
        if status != "ok":
            continue
        p = Path(output)
        if not p.is_absolute():
            p = root / p if (root / p).exists() or not p.exists() else p
        if not p.is_file():
            raise RelabelError(f"{manifest}: line {n}: {p} does not exist")
        try:
            rel = p.resolve().relative_to(root.resolve())
        except ValueError:
            rel = Path(p.name)
        out.append(InputFile(p, rel))
    return out


def _hidden(p: Path, root: Path) -> bool:
    return any(part.startswith(("_", ".")) for part in p.relative_to(root).parts[:-1])


def read_schema(path: Path) -> pa.Schema:
    """The file's Arrow schema (Parquet: with facecli metadata; CSV: inferred from its header)."""
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_schema(str(path))
        return open_batches(path, None)[0]
    except (pa.ArrowInvalid, OSError) as exc:
        raise RelabelError(f"{path}: not a readable output file ({str(exc).splitlines()[0]})") from None


def open_batches(path: Path, columns: list[str] | None) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """Stream record batches of ``columns`` (None: all) from a Parquet or CSV file."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(str(path))
        return pf.schema_arrow, pf.iter_batches(batch_size=BATCH_ROWS, columns=columns)
    import pyarrow.csv as pcsv

    types = {"Identity": pa.string(), "input": pa.string(), "approx_time": pa.string()}
    reader = pcsv.open_csv(
        str(path),
        read_options=pcsv.ReadOptions(block_size=1 << 24),
        convert_options=pcsv.ConvertOptions(strings_can_be_null=True, include_columns=columns, column_types=types),
    )
    return reader.schema, iter(reader)


@dataclass(frozen=True)
class FileInfo:
    """What the first pass needs to know about a file before reading it."""

    embedding: list[str]  # Identity_1..D
    kind: str | None  # "model_set/identity model", None when unknown (CSV)
    has_track: bool
    has_input: bool
    defaults: dict  # the model set's own defaults recorded in the file ("leader_threshold", ...)


def inspect(path: Path) -> FileInfo:
    schema = read_schema(path)
    emb = [n for n in schema.names if n.startswith("Identity_")]
    if not emb or "Identity" not in schema.names:
        raise RelabelError(f"{path}: no Identity_* embedding columns (run with an identity model)")
    if "frame" not in schema.names:
        raise RelabelError(f"{path}: no frame column; not a facecli output")
    meta = read_output_metadata(path, schema)
    kind = None
    if meta.get("model_set"):
        settings = meta.get("settings", {}) if isinstance(meta.get("settings"), dict) else {}
        kind = f"{meta['model_set']}/{settings.get('identity_model', '?')}"
    defaults = meta.get("model_set_defaults") if isinstance(meta.get("model_set_defaults"), dict) else {}
    return FileInfo(emb, kind, "track" in schema.names, "input" in schema.names, defaults)


def read_output_metadata(path: Path, schema) -> dict:
    """facecli metadata of an output: the Parquet footer, or a CSV's sidecar file."""
    if path.suffix.lower() == ".parquet":
        return read_metadata(schema)
    from facecli.io.writers import csv_sidecar

    try:
        meta = json.loads(csv_sidecar(path).read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


@dataclass
class FileScan:
    """A file reduced by the first pass (item numbers local to the file)."""

    rows: int
    row_item: np.ndarray  # int64 [rows], -1: no item (no face or no embedding)
    sums: np.ndarray  # float32 [M, D]
    embedded: np.ndarray  # int64 [M]
    faces: np.ndarray  # int64 [M]
    tracked: np.ndarray  # bool [M]: a track (not a single untracked face)
    cannot_link: np.ndarray  # int64 [P, 2]


def scan(path: Path, info: FileInfo) -> FileScan:
    """First pass over one file (see the module docstring)."""
    cols = info.embedding + ["frame"] + ["input"] * info.has_input + ["track"] * info.has_track
    acc = TrackAccumulator(singletons=True)
    row_items, groups = [], 0
    prev: tuple[object, int] | None = None
    inputs: dict[object, int] = {}
    try:
        _, batches = open_batches(path, cols)
        for batch in batches:
            n = batch.num_rows
            emb = np.column_stack([_floats(batch.column(c)) for c in info.embedding]).astype(np.float32)
            frame = np.nan_to_num(_floats(batch.column("frame")), nan=-1).astype(np.int64)
            src = batch.column("input").to_numpy(zero_copy_only=False) if info.has_input else np.full(n, "", object)
            # frame groups: a new group wherever (input, frame) changes
            change = np.ones(n, dtype=bool)
            if n > 1:
                change[1:] = (frame[1:] != frame[:-1]) | (src[1:] != src[:-1])
            if prev is not None and n:
                change[0] = (src[0], int(frame[0])) != prev
            group = groups - 1 + np.cumsum(change)
            groups = int(group[-1]) + 1 if n else groups
            prev = (src[-1], int(frame[-1])) if n else prev
            track = None
            if info.has_track:
                raw = _floats(batch.column("track"))
                ok = np.isfinite(raw) & (raw >= 0)
                vid = np.array([inputs.setdefault(s, len(inputs)) for s in src.tolist()], dtype=np.int64)
                track = np.where(ok, vid * (1 << 32) + np.nan_to_num(raw, nan=0).astype(np.int64), -1)
            row_items.append(acc.add(track, group, emb))
    except (pa.ArrowInvalid, OSError) as exc:
        raise RelabelError(f"{path}: unreadable rows ({str(exc).splitlines()[0]})") from None
    row_item = np.concatenate(row_items) if row_items else np.zeros(0, dtype=np.int64)
    return FileScan(
        rows=int(row_item.shape[0]),
        row_item=row_item,
        sums=acc.sums().copy(),
        embedded=acc.embedded().copy(),
        faces=acc.faces().copy(),
        tracked=acc.keys() >= 0,
        cannot_link=acc.cannot_link(),
    )


def _floats(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric column as float64 with NaN for nulls."""
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def embeddings_of(batch: pa.RecordBatch, columns: list[str]) -> np.ndarray:
    """float32 [N, D] embedding rows of a batch (NaN where null)."""
    return np.column_stack([_floats(batch.column(c)) for c in columns]).astype(np.float32)
