"""Reading facecli outputs: a file, an output folder or a glob -> one pandas DataFrame.

:func:`dataset` gathers the output files of a path into one ``pyarrow.dataset`` (Parquet and CSV
alike, with the column types of :mod:`facecli.schema`); :func:`read` scans it with the columns
and filters given, so only the wanted columns are read and rows are filtered file by file (row
groups whose statistics exclude a Parquet filter are not read at all) before anything reaches
pandas. A folder of 10,000 outputs is never copied whole.

What counts as an output file: ``.parquet``, ``.pq`` and ``.csv`` files. Inside a folder, files
and folders whose names start with ``.`` or ``_`` are skipped: the run manifest
(``_manifest.jsonl``), cluster-identities' ``_identities.parquet`` summary, temporary files being
written (``.<name>.part-<pid>``), the in-progress folders that resume from
(``.<name>.facecli-partial/``) and CSV metadata sidecars (``.<name>.csv.facecli.json``). A file
named explicitly is always read.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from facecli.config import OUTPUT_FORMATS
from facecli.schema import read_metadata

PathLike = str | os.PathLike
PER_OUTPUT_KEYS = ("inputs", "input_info")  # metadata that describes one output file, not the run
_GLOB_CHARS = "*?["


class ReadError(ValueError):
    """The path holds no readable facecli output; str(error) is one line naming it and the reason."""


def output_files(path: PathLike | Sequence[PathLike]) -> list[Path]:
    """Every output file of ``path``: a file, a folder (recursive, sorted) or a glob; or a list of them.

    Raises:
        FileNotFoundError: a path that does not exist, or nothing found.
    """
    specs = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    found: list[Path] = []
    for spec in specs:
        text = os.fspath(spec)
        p = Path(text)
        if p.is_dir():
            found += _folder_files(p)
        elif p.is_file():
            found.append(p)
        elif any(c in text for c in _GLOB_CHARS):
            for hit in sorted(glob.glob(text, recursive=True)):
                h = Path(hit)
                if h.is_dir():
                    found += _folder_files(h)
                elif h.is_file() and _is_data(h.name):
                    found.append(h)
        else:
            raise FileNotFoundError(f"{text}: no such file or folder")
    unique = list(dict.fromkeys(found))
    if not unique:
        names = ", ".join(os.fspath(s) for s in specs)
        raise FileNotFoundError(f"{names}: no facecli output files (.parquet, .csv) found")
    return unique


def _is_data(name: str) -> bool:
    return Path(name).suffix.lower() in OUTPUT_FORMATS and not name.startswith((".", "_"))


def _folder_files(root: Path) -> list[Path]:
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        out += [Path(folder) / f for f in sorted(files) if _is_data(f)]
    return out


def _format(path: Path) -> str:
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ReadError(f"{path}: not a facecli output (expected .parquet or .csv)")
    return fmt


def _csv_types() -> dict[str, pa.DataType]:
    """Column types of facecli's CSV columns, from the schema (unknown names are float32)."""
    from facecli.columns import _WIDEST

    return {f.name: f.type for f in _WIDEST.arrow_schema()}


def _csv_schema(path: Path) -> pa.Schema:
    import pyarrow.csv as pcsv

    with open(path, "rb") as fh:
        header = fh.readline()
    if not header.strip():
        raise ReadError(f"{path}: empty CSV file")
    names = pcsv.read_csv(
        pa.py_buffer(header), read_options=pcsv.ReadOptions(autogenerate_column_names=False)
    ).column_names
    known = _csv_types()
    return pa.schema([pa.field(n, known.get(n, pa.float32())) for n in names])


def _file_info(path: Path) -> tuple[pa.Schema, dict]:
    """(schema without metadata, facecli metadata) of one output file."""
    fmt = _format(path)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            schema = pq.read_schema(path)
            return schema.remove_metadata(), read_metadata(schema)
        from facecli.io.writers import csv_sidecar

        schema = _csv_schema(path)
        try:
            meta = json.loads(csv_sidecar(path).read_text())
        except (OSError, ValueError):
            meta = {}
        return schema, meta
    except (OSError, pa.ArrowException) as exc:
        raise ReadError(f"{path}: not a readable {fmt} file ({_first_line(exc)})") from None


def _name(path) -> str:
    return os.fspath(path) if isinstance(path, (str, os.PathLike)) else ", ".join(os.fspath(p) for p in path)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


class Outputs:
    """The output files of a path, their unified schema and run metadata (see :func:`open_outputs`)."""

    def __init__(self, files: list[Path], schema: pa.Schema, metadata: list[dict]) -> None:
        self.files = files
        self.schema = schema
        self.metadata = metadata

    def dataset(self):
        """One ``pyarrow.dataset.Dataset`` over every file (a union of a Parquet and a CSV part)."""
        import pyarrow.dataset as ds

        parts = []
        parquet = [str(f) for f in self.files if _format(f) == "parquet"]
        csv = [str(f) for f in self.files if _format(f) == "csv"]
        if parquet:
            parts.append(ds.dataset(parquet, schema=self.schema, format="parquet"))
        if csv:
            import pyarrow.csv as pcsv

            convert = pcsv.ConvertOptions(
                column_types={f.name: f.type for f in self.schema}, strings_can_be_null=True
            )
            fmt = ds.CsvFileFormat(convert_options=convert)
            parts.append(ds.dataset(csv, schema=self.schema, format=fmt))
        return parts[0] if len(parts) == 1 else ds.dataset(parts)

    def attrs(self) -> dict[str, Any]:
        """What :func:`read` puts in ``DataFrame.attrs``: small, so pandas can copy it cheaply."""
        first = next((m for m in self.metadata if m), {})
        return {
            "facecli": {k: v for k, v in first.items() if k not in PER_OUTPUT_KEYS},
            "files": len(self.files),
            "model_sets": sorted({str(m.get("model_set")) for m in self.metadata if m.get("model_set")}),
            "settings_hashes": sorted({str(m["settings_hash"]) for m in self.metadata if m.get("settings_hash")}),
        }


def open_outputs(path: PathLike | Sequence[PathLike]) -> Outputs:
    """The output files of ``path`` with one schema for all (columns a file lacks read as null).

    Raises:
        FileNotFoundError: nothing found.
        ReadError: a file that is not a readable facecli output.
    """
    files = output_files(path)
    schemas, metadata = [], []
    for f in files:
        schema, meta = _file_info(f)
        schemas.append(schema)
        metadata.append(meta)
    first = schemas[0]
    if all(s.equals(first) for s in schemas[1:]):
        schema = first
    else:
        try:
            schema = pa.unify_schemas(schemas)
        except pa.ArrowException as exc:
            raise ReadError(f"{_name(path)}: files with incompatible columns ({_first_line(exc)})") from None
    return Outputs(files, schema, metadata)


def dataset(path: PathLike | Sequence[PathLike]):
    """A ``pyarrow.dataset.Dataset`` over the outputs of ``path`` (for DuckDB, Polars, streaming scans).

    ``duckdb.sql("SELECT ... FROM ds")`` on the returned object pushes columns and filters down too.
    """
    return open_outputs(path).dataset()


def _expression(filters: Any):
    """A pyarrow expression from an expression, or from pandas/pyarrow's list-of-tuples form."""
    import pyarrow.compute as pc

    if filters is None or isinstance(filters, pc.Expression):
        return filters
    import pyarrow.parquet as pq

    try:
        return pq.filters_to_expression(filters)
    except (TypeError, ValueError) as exc:
        raise ReadError(f"filters: {_first_line(exc)}") from None


def read(
    path: PathLike | Sequence[PathLike],
    columns: Iterable[str] | None = None,
    filters: Any = None,
    *,
    pyfeat: bool = False,
):
    """One pandas DataFrame from facecli outputs.

    Args:
        path: an output file (``.parquet`` or ``.csv``), an output folder (read recursively; the
            manifest and temporary or in-progress files are skipped), a glob (``"out/**/*.parquet"``),
            or a list of these.
        columns: read only these columns (e.g. ``facecli.columns.AUS``); default all.
        filters: rows to keep, applied file by file while reading: a ``pyarrow.compute`` expression
            (``pc.field("FaceScore") > 0.9``) or pandas' list-of-tuples form
            (``[("input", "==", "clip.mp4"), ("frame", "<", 100)]``).
        pyfeat: return :func:`facecli.pyfeat.to_pyfeat`'s py-feat 2.1.5 view instead.

    Returns:
        The rows of every file in path order, then file order. ``df.attrs``: ``facecli`` (the run
        metadata of the first file: version, model set, weight hashes, device, settings,
        ``columns_left_out``), ``files`` (how many were read), ``model_sets`` and
        ``settings_hashes`` (distinct values over the files; more than one hash means the files
        come from runs with different settings).

    Raises:
        FileNotFoundError: nothing to read at ``path``.
        ReadError: an unreadable file, a column no file has, or bad filters.
    """
    outputs = open_outputs(path)
    names = None if columns is None else list(dict.fromkeys(columns))
    if names is not None:
        missing = [c for c in names if c not in outputs.schema.names]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise ReadError(f"{_name(path)}: no column {', '.join(missing[:3])}{more}")
    try:
        table = outputs.dataset().to_table(columns=names, filter=_expression(filters))
    except pa.ArrowException as exc:
        raise ReadError(f"{_name(path)}: cannot read its {len(outputs.files)} file(s) ({_first_line(exc)})") from None
    df = table.to_pandas()
    df.attrs.update(outputs.attrs())
    if pyfeat:
        from facecli.pyfeat import to_pyfeat

        df = to_pyfeat(df)
    return df
