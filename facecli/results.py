"""Reading facecli outputs: a file, an output folder or a glob -> one pandas DataFrame.

:func:`read` scans the output files one at a time, each as a ``pyarrow.dataset`` with the
columns and filter given: only the wanted columns are read, Parquet row groups whose statistics
rule the filter out are skipped, and rows are filtered as they are read. Memory holds the result
and one file's footer, never the whole folder: a folder of 10,000 outputs is never copied whole.
(One pyarrow dataset over thousands of files keeps every file's decoded footer, which for
2,000-column outputs is several MB each; :func:`dataset` builds that single dataset for tools
that want one, such as DuckDB, on folders of moderate size.)

What counts as an output file: ``.parquet``, ``.pq`` and ``.csv`` files. Inside a folder, files
and folders whose names start with ``.`` or ``_`` are skipped: the run manifest
(``_manifest.jsonl``), cluster-identities' ``_identities.parquet`` summary, temporary files being
written (``.<name>.part-<pid>``), the in-progress folders that resume from
(``.<name>.facecli-partial/``) and CSV metadata sidecars (``.<name>.csv.facecli.json``). A file
named explicitly is always read. CSV files get the column types of :mod:`facecli.schema` and
their sidecar's metadata, so they read like Parquet.
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
_COMPACT_EVERY = 16  # files whose tables are merged into one chunk per column


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


def _file_dataset(path: Path):
    """(a ``pyarrow.dataset`` of one output file, its facecli metadata)."""
    import pyarrow.dataset as ds

    fmt = _format(path)
    try:
        if fmt == "parquet":
            one = ds.dataset(str(path), format="parquet")
            return one, read_metadata(one.schema)
        import pyarrow.csv as pcsv

        from facecli.io.writers import csv_sidecar

        schema = _csv_schema(path)
        convert = pcsv.ConvertOptions(column_types={f.name: f.type for f in schema}, strings_can_be_null=True)
        one = ds.dataset(str(path), schema=schema, format=ds.CsvFileFormat(convert_options=convert))
        try:
            meta = json.loads(csv_sidecar(path).read_text())
        except (OSError, ValueError):
            meta = {}
        return one, meta
    except (OSError, pa.ArrowException) as exc:
        raise ReadError(f"{path}: not a readable {fmt} file ({_first_line(exc)})") from None


class _Attrs:
    """Collects what :func:`read` puts in ``DataFrame.attrs``: small, so pandas copies it cheaply."""

    def __init__(self) -> None:
        self.first: dict | None = None
        self.files = 0
        self.model_sets: set[str] = set()
        self.hashes: set[str] = set()

    def add(self, meta: dict) -> None:
        self.files += 1
        if meta and self.first is None:
            self.first = {k: v for k, v in meta.items() if k not in PER_OUTPUT_KEYS}
        if meta.get("model_set"):
            self.model_sets.add(str(meta["model_set"]))
        if meta.get("settings_hash"):
            self.hashes.add(str(meta["settings_hash"]))

    def as_dict(self) -> dict[str, Any]:
        return {"facecli": self.first or {}, "files": self.files, "model_sets": sorted(self.model_sets),
                "settings_hashes": sorted(self.hashes)}


def _type_of(name: str) -> pa.DataType:
    return _csv_types().get(name, pa.float32())


def _name(path) -> str:
    return os.fspath(path) if isinstance(path, (str, os.PathLike)) else ", ".join(os.fspath(p) for p in path)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def dataset(path: PathLike | Sequence[PathLike]):
    """One ``pyarrow.dataset.Dataset`` over every output file of ``path`` (columns a file lacks read
    as null), for tools that scan a dataset object, e.g. ``duckdb.sql("SELECT ... FROM ds")``,
    which pushes columns and filters down. It keeps every file's footer in memory while scanning:
    for very large folders prefer :func:`read` or DuckDB's own ``read_parquet`` on a glob.

    Raises:
        FileNotFoundError: nothing found.
        ReadError: a file that is not a readable facecli output, or files whose columns conflict.
    """
    import pyarrow.dataset as ds

    parts, schemas = [], []
    for f in output_files(path):
        one, _ = _file_dataset(f)
        schema = one.schema.remove_metadata()
        if not any(schema.equals(s) for s in schemas):
            schemas.append(schema)
        parts.append(one)
    try:
        unified = schemas[0] if len(schemas) == 1 else pa.unify_schemas(schemas)
    except pa.ArrowException as exc:
        raise ReadError(f"{_name(path)}: files with conflicting columns ({_first_line(exc)})") from None
    return ds.dataset([p.replace_schema(unified) for p in parts])


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


def _check_columns(path, missing: list[str]) -> None:
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ReadError(f"{_name(path)}: no column {', '.join(missing[:3])}{more}")


def _filter_names(filters: Any) -> list[str]:
    """Column names in pandas' list-of-tuples filters ([] for an expression)."""
    if filters is None or not isinstance(filters, (list, tuple)):
        return []
    terms = [t for group in filters for t in (group if isinstance(group, list) else [group])]
    return [str(t[0]) for t in terms if isinstance(t, tuple) and t]


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
    names = None if columns is None else list(dict.fromkeys(columns))
    expr = _expression(filters)
    referenced = _filter_names(filters)
    attrs = _Attrs()
    seen: set[str] = set()
    parts, recent = [], []
    for k, f in enumerate(output_files(path)):
        one, meta = _file_dataset(f)
        attrs.add(meta)
        have = one.schema.names
        seen.update(have)
        if k == 0 and names is not None:  # a name facecli never writes: say so before reading everything
            _check_columns(path, [c for c in names if c not in seen and c not in _csv_types()])
        absent = [n for n in dict.fromkeys([*(names or []), *referenced]) if n not in have]
        if absent:  # read as null here, so a column or filter that other files have still works
            one = one.replace_schema(pa.schema([*one.schema, *(pa.field(n, _type_of(n)) for n in absent)]))
        try:
            recent.append(one.to_table(columns=names, filter=expr))
            if len(recent) == _COMPACT_EVERY:  # thousands of tiny chunks per column cost more than their data
                parts.append(pa.concat_tables(recent, promote_options="default").combine_chunks())
                recent = []
        except pa.ArrowException as exc:
            raise ReadError(f"{f}: cannot read ({_first_line(exc)})") from None
    if names is not None:
        _check_columns(path, [c for c in names if c not in seen])
    parts += recent
    try:
        table = parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="default")
    except pa.ArrowException as exc:
        raise ReadError(f"{_name(path)}: files with conflicting columns ({_first_line(exc)})") from None
    if names is not None:
        table = table.select(names)
    df = table.to_pandas()
    df.attrs.update(attrs.as_dict())
    if pyfeat:
        from facecli.pyfeat import to_pyfeat

        df = to_pyfeat(df)
    return df
