"""Work in progress on disk: chunk files and checkpoints that let an interrupted run resume.

Each output file being made has a hidden folder beside it, ``.<name>.facecli-partial/``, that
dataset readers (pandas, pyarrow.dataset, Spark) skip, holding:

* ``run.json``: what the work was started with (settings, the inputs' sizes and times); work
  started with anything else is discarded, never mixed in;
* ``lock``: an ``fcntl`` lock held while a process works on the output, so two processes never
  write the same output (a requeued SLURM task and a stray old one, say);
* ``unit-NNNNN/``: per work unit (a video, or a group of images), Parquet chunk files
  ``chunk-NNNNN.chunk`` (not ``.parquet``, so no glob over the output folder picks them up) and
  ``state.json``, rewritten atomically at each checkpoint: the chunks written so far, the last
  frame done, counters and the unit's processing state.

A chunk and the checkpoint naming it are flushed to disk (fsync) before the checkpoint is
replaced, so after kill -9 or a node failure a checkpoint always names complete chunks; rows
written after the last checkpoint are in a ``.tmp`` chunk that is discarded on resume. The final
output is only written, atomically, from the chunks of finished units.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from facecli.io.writers import dictionary_columns

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

PARTIAL_SUFFIX = ".facecli-partial"


class StoreBusy(Exception):
    """Another process holds the output's lock; one line for the user."""


def partial_dir(output: Path) -> Path:
    """The hidden in-progress folder of ``output``."""
    return output.with_name(f".{output.name}{PARTIAL_SUFFIX}")


@dataclass
class Checkpoint:
    """A unit's progress as saved at its last checkpoint.

    position: (frame number, time in seconds) of the last frame whose rows are in the chunks,
        or None before the first checkpoint.
    done: every frame of the unit is in the chunks.
    state: the unit processor's state (JSON values and numpy arrays).
    info: facts about the input (frame rate, rotation, ...) for the output's metadata.
    failures: [input, one-line error] of every input of the unit that failed (images of a group).
    """

    position: tuple[int, float] | None = None
    done: bool = False
    frames: int = 0
    faces: int = 0
    rows: int = 0
    chunks: list[str] = field(default_factory=list)
    state: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    failures: list[list[str]] = field(default_factory=list)

    def to_json(self) -> str:
        record = asdict(self)
        record["state"] = _encode(self.state)
        return json.dumps(record, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> "Checkpoint":
        record = json.loads(text)
        record["state"] = _decode(record.get("state", {}))
        if record.get("position") is not None:
            record["position"] = (int(record["position"][0]), float(record["position"][1]))
        return Checkpoint(**record)


class TargetStore:
    """The in-progress folder of one output.

    Args:
        output: the final output file.
        fingerprint: JSON-serialisable description of what the work depends on; work found
            with another fingerprint is discarded.
    """

    def __init__(self, output: Path, fingerprint: dict) -> None:
        self.output = Path(output)
        self.dir = partial_dir(self.output)
        self.fingerprint = fingerprint
        self.discarded = False  # an earlier run's work was found with another fingerprint and removed
        self._lock_fd: int | None = None

    def open(self) -> "TargetStore":
        """Create or reuse the folder and take its lock.

        Raises:
            StoreBusy: another process is working on this output.
            OSError: the folder cannot be created.
        """
        self.dir.mkdir(parents=False, exist_ok=True)
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o664)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise StoreBusy(f"{self.output}: being written by {holder}; not started twice") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"facecli pid {os.getpid()} on {os.uname().nodename}".encode(), 0)
        self._lock_fd = fd
        run_file = self.dir / "run.json"
        wanted = json.dumps(self.fingerprint, sort_keys=True)
        try:
            found = run_file.read_text()
        except (FileNotFoundError, UnicodeDecodeError):
            found = None
        if found is not None and found != wanted:
            for child in self.dir.iterdir():
                if child.name.startswith("unit-"):
                    shutil.rmtree(child, ignore_errors=True)
            self.discarded = True
        if found != wanted:
            _write_atomic(run_file, wanted.encode())
        return self

    def unit(self, position: int, schema: pa.Schema) -> "UnitStore":
        return UnitStore(self.dir / f"unit-{position:05d}", schema)

    def release(self) -> None:
        """Let go of the lock (the folder and its checkpoints stay for a later run)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def remove(self) -> None:
        """Delete the folder (after the final output is written, or when the work is abandoned)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self.release()


class UnitStore:
    """Chunk files and the checkpoint of one work unit.

    Args:
        folder: ``unit-NNNNN`` inside the output's in-progress folder.
        schema: the Arrow schema of the rows.
    """

    def __init__(self, folder: Path, schema: pa.Schema, group_rows: int = 1024) -> None:
        self.dir = Path(folder)
        self.schema = schema
        self.checkpoint = Checkpoint()
        self.group_rows = group_rows  # rows per Parquet row group (wide rows: few, large groups read fast)
        self._writer = None
        self._tmp: Path | None = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def load(self) -> Checkpoint:
        """The unit's saved progress (a fresh Checkpoint when there is none), dropping any torn chunk."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.dir.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        try:
            self.checkpoint = Checkpoint.from_json((self.dir / "state.json").read_text())
        except FileNotFoundError:
            self.checkpoint = Checkpoint()
        except (ValueError, TypeError, KeyError):  # unreadable state: start the unit again
            self.reset()
        return self.checkpoint

    def reset(self) -> None:
        """Forget the unit's progress (its input changed, or it must be redone)."""
        self.discard_open_chunk()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint = Checkpoint()

    def write(self, batch: pa.RecordBatch) -> None:
        """Rows into the open chunk (opened on first use; rows go to disk in groups of ``group_rows``)."""
        if batch.num_rows == 0:
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= self.group_rows:
            self._flush()

    def _flush(self) -> None:
        import pyarrow.parquet as pq

        if not self._pending:
            return
        if self._writer is None:
            self._tmp = self.dir / f"chunk-{len(self.checkpoint.chunks):05d}.chunk.tmp"
            # chunks are read back once, when the output is written: LZ4 costs half of zstd's time both
            # ways at about the same size for float columns (measured, 2195 columns)
            self._writer = pq.ParquetWriter(str(self._tmp), self.schema, compression="lz4",
                                            use_dictionary=dictionary_columns(self.schema))
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self._pending, self._pending_rows = [], 0

    @property
    def has_open_chunk(self) -> bool:
        return self._writer is not None or bool(self._pending)

    def save(self, checkpoint: Checkpoint) -> None:
        """Close the open chunk and make ``checkpoint`` (which must count its rows) the unit's progress."""
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            final = self._tmp.with_suffix("")  # drop .tmp
            _fsync_path(self._tmp)
            os.replace(self._tmp, final)
            checkpoint.chunks = [*checkpoint.chunks, final.name]
            self._tmp = None
        _write_atomic(self.dir / "state.json", checkpoint.to_json().encode())
        self.checkpoint = checkpoint

    def discard_open_chunk(self) -> None:
        """Drop rows written since the last checkpoint."""
        self._pending, self._pending_rows = [], 0
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - the file is being thrown away anyway
                pass
            self._writer = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The rows of every saved chunk, in order."""
        import pyarrow.parquet as pq

        for name in self.checkpoint.chunks:
            pf = pq.ParquetFile(str(self.dir / name))
            yield from pf.iter_batches(batch_size=4096)


class MemoryStore:
    """The rows of one small unit (a single image) kept in memory: nothing to resume."""

    def __init__(self) -> None:
        self.checkpoint = Checkpoint()
        self._batches: list[pa.RecordBatch] = []

    def load(self) -> Checkpoint:
        return self.checkpoint

    def write(self, batch: pa.RecordBatch) -> None:
        self._batches.append(batch)

    has_open_chunk = False

    def save(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint

    def discard_open_chunk(self) -> None:
        pass

    def reset(self) -> None:
        self._batches.clear()
        self.checkpoint = Checkpoint()

    def batches(self) -> Iterator[pa.RecordBatch]:
        yield from self._batches


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _encode(value):
    """JSON-able form of a state value; numpy arrays kept exactly (dtype, shape, raw bytes)."""
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        return {"__ndarray__": base64.b64encode(arr.tobytes()).decode(), "dtype": arr.dtype.str, "shape": list(arr.shape)}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode(value):
    if isinstance(value, dict):
        if "__ndarray__" in value:
            raw = base64.b64decode(value["__ndarray__"])
            return np.frombuffer(raw, dtype=np.dtype(value["dtype"])).reshape(value["shape"]).copy()
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value
