"""Reading a finished facecli output (Parquet or CSV) frame by frame, for drawing.

Only the columns the overlay draws are read, in batches (Parquet: row groups whose ``input``
statistics exclude the wanted input are skipped), so memory does not grow with the table.
Column groups the file lacks (the lite set has no AUs or gaze) are simply not drawn.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from facecli.overlay.draw import FrameFaces

EMOTION_NAMES = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
BOX_COLUMNS = ("FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight", "FaceScore")
POSE_COLUMNS = ("Pitch", "Roll", "Yaw")
GAZE_COLUMNS = ("gaze_pitch", "gaze_yaw")
LANDMARK_COLUMNS = tuple(f"x_{i}" for i in range(68)) + tuple(f"y_{i}" for i in range(68))
_AU = re.compile(r"^AU\d+$")
_BATCH_ROWS = 512


class OverlayError(Exception):
    """An overlay cannot be made; str(error) is one line naming the file and the reason."""


@dataclass(frozen=True)
class FrameRows:
    """One frame's rows, converted for drawing.

    input: the ``input`` value of the rows (the path as the run was given it).
    frame: the ``frame`` value (video: decode index before --skip-frames; images: position in the run).
    height, width: ``FrameHeight`` / ``FrameWidth`` of the rows (the frame the coordinates refer to).
    faces: the faces with a box (rows with FaceScore 0 or a NaN box are left out).
    """

    input: str
    frame: int
    height: int
    width: int
    faces: FrameFaces


@dataclass(frozen=True)
class TableColumns:
    """Which columns of a file the overlay reads."""

    aus: tuple[str, ...]
    emotions: tuple[str, ...]
    pose: bool
    gaze: bool
    identity: bool
    track: bool
    mesh: int  # mesh points read (0: none)

    @classmethod
    def of(cls, names: list[str], mesh: bool) -> TableColumns:
        have = set(names)
        missing = [c for c in (*BOX_COLUMNS, "input", "frame", "FrameHeight", "FrameWidth") if c not in have]
        if missing:
            raise ValueError(f"not a facecli output (no {', '.join(missing[:3])} column)")
        n_mesh = 0
        if mesh:
            while f"mesh_x_{n_mesh}" in have and f"mesh_y_{n_mesh}" in have:
                n_mesh += 1
        return cls(
            aus=tuple(c for c in names if _AU.match(c)),
            emotions=tuple(c for c in EMOTION_NAMES if c in have),
            pose=all(c in have for c in POSE_COLUMNS),
            gaze=all(c in have for c in GAZE_COLUMNS),
            identity="Identity" in have,
            track="track" in have,
            mesh=n_mesh,
        )

    def floats(self) -> list[str]:
        """Numeric columns read as float32, in the order the blocks are cut from."""
        cols = list(BOX_COLUMNS) + list(LANDMARK_COLUMNS)
        cols += list(POSE_COLUMNS) if self.pose else []
        cols += list(GAZE_COLUMNS) if self.gaze else []
        cols += list(self.emotions) + list(self.aus)
        cols += [f"mesh_x_{i}" for i in range(self.mesh)] + [f"mesh_y_{i}" for i in range(self.mesh)]
        return cols

    def all(self) -> list[str]:
        cols = self.floats() + ["FrameHeight", "FrameWidth", "input", "frame"]
        cols += ["Identity"] if self.identity else []
        cols += ["track"] if self.track else []
        return cols


def read_frames(table: str | Path, input_name: str | None = None, mesh: bool = False) -> Iterator[FrameRows]:
    """Frames of a facecli output in file order, one item per (input, frame) run of rows.

    Args:
        table: a facecli Parquet or CSV file.
        input_name: keep only rows whose ``input`` equals this; None keeps every input.
        mesh: also read the mesh's x, y columns (when the file has them).

    Raises:
        OverlayError: the file is missing, unreadable or not a facecli output, or the rows of an
            input are not in frame order.
    """
    table = Path(table)
    try:
        columns, batches = _open(table, input_name, mesh)
        yield from _group(table, columns, batches)
    except OverlayError:
        raise
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise OverlayError(f"{table}: cannot read the table ({_first_line(exc)})") from None


def read_inputs(table: str | Path) -> Iterator[str]:
    """The ``input`` value of every row, streamed (for finding the inputs' common folder)."""
    table = Path(table)
    try:
        for batch in _batches(table, ["input"], None):
            yield from (s for s in batch.column(0).to_pylist() if s)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise OverlayError(f"{table}: cannot read the table ({_first_line(exc)})") from None


def _open(table: Path, input_name: str | None, mesh: bool) -> tuple[TableColumns, Iterator[pa.RecordBatch]]:
    columns = TableColumns.of(_column_names(table), mesh)
    return columns, _batches(table, columns.all(), input_name, columns)


def _is_csv(table: Path) -> bool:
    return table.suffix.lower() == ".csv"


def _column_names(table: Path) -> list[str]:
    if not table.is_file():
        raise OverlayError(f"{table}: no such file")
    if _is_csv(table):
        import pyarrow.csv as pcsv

        with pcsv.open_csv(table, read_options=pcsv.ReadOptions(block_size=1 << 16)) as reader:
            return reader.schema.names
    import pyarrow.parquet as pq

    return pq.read_schema(table).names


def _batches(
    table: Path, names: list[str], input_name: str | None, columns: TableColumns | None = None
) -> Iterator[pa.RecordBatch]:
    """Record batches of ``names`` (in that order), filtered to ``input_name`` when given."""
    import pyarrow.compute as pc

    if _is_csv(table):
        source = _csv_batches(table, names, columns)
    else:
        source = _parquet_batches(table, names, input_name)
    for batch in source:
        if input_name is not None:
            batch = batch.filter(pc.fill_null(pc.equal(batch.column(names.index("input")), input_name), False))
        if batch.num_rows:
            yield batch


def _parquet_batches(table: Path, names: list[str], input_name: str | None) -> Iterator[pa.RecordBatch]:
    import pyarrow.parquet as pq

    with pq.ParquetFile(table) as pf:
        groups = list(range(pf.num_row_groups))
        if input_name is not None:
            groups = [g for g in groups if _may_hold(pf.metadata.row_group(g), input_name)]
        if not groups:
            return
        yield from pf.iter_batches(batch_size=_BATCH_ROWS, row_groups=groups, columns=names)


def _may_hold(group, input_name: str) -> bool:
    for j in range(group.num_columns):
        col = group.column(j)
        if col.path_in_schema == "input":
            stats = col.statistics
            if stats is None or not stats.has_min_max:
                return True
            return stats.min <= input_name <= stats.max
    return True


def _csv_batches(table: Path, names: list[str], columns: TableColumns | None) -> Iterator[pa.RecordBatch]:
    import pyarrow.csv as pcsv

    types: dict[str, pa.DataType] = {"input": pa.string()}
    if columns is not None:
        types.update({c: pa.float32() for c in columns.floats()})
        types.update({"FrameHeight": pa.int32(), "FrameWidth": pa.int32(), "frame": pa.int64(), "track": pa.float64()})
        types["Identity"] = pa.string()
    convert = pcsv.ConvertOptions(include_columns=names, column_types=types, strings_can_be_null=True)
    with pcsv.open_csv(table, convert_options=convert) as reader:
        for batch in reader:
            yield batch.select(names)


@dataclass
class _Block:
    """Numpy columns of consecutive rows of one input (a batch, or the rows carried to the next one)."""

    floats: np.ndarray  # float32[R, F] in TableColumns.floats() order
    size: np.ndarray  # int64[R, 2] FrameHeight, FrameWidth
    inputs: list[str]
    frame: np.ndarray  # int64[R]
    identity: list[str | None]
    track: np.ndarray  # float64[R], NaN for none

    def __len__(self) -> int:
        return int(self.frame.shape[0])

    def cut(self, a: int, b: int) -> _Block:
        return _Block(self.floats[a:b], self.size[a:b], self.inputs[a:b], self.frame[a:b],
                      self.identity[a:b], self.track[a:b])

    def joined(self, other: _Block) -> _Block:
        return _Block(
            np.concatenate([self.floats, other.floats]), np.concatenate([self.size, other.size]),
            self.inputs + other.inputs, np.concatenate([self.frame, other.frame]),
            self.identity + other.identity, np.concatenate([self.track, other.track]),
        )


def _block(batch: pa.RecordBatch, columns: TableColumns) -> _Block:
    n_float = len(columns.floats())
    arrays = [batch.column(i).to_numpy(zero_copy_only=False) for i in range(n_float)]
    floats = np.stack(arrays, axis=1).astype(np.float32, copy=False) if arrays else np.zeros((batch.num_rows, 0))
    col = {name: batch.column(name) for name in ("FrameHeight", "FrameWidth", "input", "frame")}
    size = np.stack([_ints(col["FrameHeight"]), _ints(col["FrameWidth"])], axis=1)
    identity = batch.column("Identity").to_pylist() if columns.identity else [None] * batch.num_rows
    track = (
        batch.column("track").cast(pa.float64()).to_numpy(zero_copy_only=False)
        if columns.track
        else np.full(batch.num_rows, np.nan)
    )
    return _Block(floats, size, col["input"].to_pylist(), _ints(col["frame"]), identity, track)


def _ints(arr: pa.Array) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False).astype(np.int64)


def _group(table: Path, columns: TableColumns, batches: Iterator[pa.RecordBatch]) -> Iterator[FrameRows]:
    pending: _Block | None = None
    seen: dict[str, int] = {}  # last frame yielded per input
    for batch in batches:
        block = _block(batch, columns)
        if pending is not None:
            block = pending.joined(block)
        starts = _run_starts(block)
        for a, b in zip(starts[:-1], starts[1:]):
            yield _frame_rows(table, block.cut(a, b), columns, seen)
        pending = block.cut(starts[-1], len(block))
    if pending is not None and len(pending):
        yield _frame_rows(table, pending, columns, seen)


def _run_starts(block: _Block) -> list[int]:
    """Row positions where a new (input, frame) run begins, plus the start of the last run."""
    change = np.flatnonzero(np.diff(block.frame) != 0) + 1
    starts = set(change.tolist())
    starts.update(i for i in range(1, len(block)) if block.inputs[i] != block.inputs[i - 1])
    return [0, *sorted(starts)] if len(block) else [0]


def _frame_rows(table: Path, rows: _Block, columns: TableColumns, seen: dict[str, int]) -> FrameRows:
    name, frame = rows.inputs[0], int(rows.frame[0])
    last = seen.get(name)
    if last is not None and frame <= last:
        raise OverlayError(f"{table}: rows of {name} are not in frame order (frame {frame} after {last})")
    seen[name] = frame
    height, width = (int(v) for v in rows.size[0])
    return FrameRows(name, frame, height, width, faces_from_rows(rows.floats, rows.identity, rows.track, columns))


def faces_from_rows(
    floats: np.ndarray, identity: list[str | None], track: np.ndarray, columns: TableColumns
) -> FrameFaces:
    """The drawable faces of some rows (rows with FaceScore 0 or a non-finite box are dropped).

    Args:
        floats: float32[R, F] the rows' numeric columns in ``columns.floats()`` order.
        identity: len R ``Identity`` labels (None for none).
        track: float[R] ``track`` ids, NaN for none.
        columns: what the columns are.
    """
    box = floats[:, :5]
    keep = np.flatnonzero((box[:, 4] > 0) & np.isfinite(box[:, :4]).all(axis=1))
    f = floats[keep]
    x, y, w, h = f[:, 0], f[:, 1], f[:, 2], f[:, 3]
    boxes = np.stack([x, y, x + w, y + h], axis=1)
    at = 5
    landmarks = np.stack([f[:, at: at + 68], f[:, at + 68: at + 136]], axis=2)
    at += 136
    pose = gaze = None
    if columns.pose:
        pose, at = f[:, at: at + 3], at + 3
    if columns.gaze:
        gaze, at = f[:, at: at + 2], at + 2
    emotions, at = f[:, at: at + len(columns.emotions)], at + len(columns.emotions)
    aus, at = f[:, at: at + len(columns.aus)], at + len(columns.aus)
    mesh = None
    if columns.mesh:
        m = columns.mesh
        mesh = np.stack([f[:, at: at + m], f[:, at + m: at + 2 * m]], axis=2)
    labels, keys = [], []
    for r in keep.tolist():
        ident = identity[r] or ""
        t = track[r]
        tr = f"track {int(t)}" if np.isfinite(t) else ""
        labels.append(" ".join(p for p in (ident, tr) if p))
        keys.append(ident or tr)
    return FrameFaces(
        boxes=boxes,
        labels=tuple(labels),
        colour_keys=tuple(keys),
        landmarks=landmarks,
        mesh=mesh,
        pose=pose,
        gaze=gaze,
        emotions=emotions if columns.emotions else None,
        emotion_names=columns.emotions,
        aus=aus if columns.aus else None,
        au_names=columns.aus,
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:160] if lines else type(exc).__name__
