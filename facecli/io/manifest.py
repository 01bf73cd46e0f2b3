"""The run manifest: one JSON line per input attempt, appended safely by many processes at once.

Every line is written with a single ``write`` on a descriptor opened with ``O_APPEND`` while an
exclusive ``fcntl`` lock is held, and flushed to disk before the lock is released, so SLURM array
tasks appending to the same ``_manifest.jsonl`` (on a local or network file system with working
locks) never interleave or lose lines. Readers take the last line of an input as its state.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

MANIFEST_NAME = "_manifest.jsonl"

try:  # POSIX; without it (Windows) lines are still appended with O_APPEND alone
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


@dataclass(frozen=True)
class ManifestLine:
    """One input attempt.

    status: "ok" (output written), "failed" (see ``error``) or "skipped" (complete output kept).
    output: the output file, or None when nothing was written for this input.
    seconds: wall time spent on this input.
    shard: "I/N" when the run was sharded, else None.
    settings_hash: the hash of the settings that shape the output (see RunConfig.output_settings).
    output_bytes: size of the output file (lets --skip-existing trust a line without opening the file).
    resumed_from: frame number the input was resumed after, when it continued an interrupted run.
    overlay: the overlay written for the input (--overlay), or the overlay folder of several inputs.
    overlay_error: one line when the overlay could not be written (the output was).
    """

    input: str
    output: str | None
    status: str
    error: str | None = None
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    model_set: str | None = None
    facecli_version: str | None = None
    shard: str | None = None
    host: str = ""
    finished_at: str = ""
    settings_hash: str | None = None
    output_bytes: int | None = None
    resumed_from: int | None = None
    overlay: str | None = None
    overlay_error: str | None = None

    @staticmethod
    def now() -> str:
        return datetime.now(timezone.utc).isoformat(timespec="seconds")


def append_line(path: Path, line: ManifestLine) -> None:
    """Append one line to the manifest at ``path`` (created if missing).

    Raises:
        OSError: the manifest cannot be written.
    """
    record = asdict(line)
    record["host"] = record["host"] or socket.gethostname()
    record["finished_at"] = record["finished_at"] or ManifestLine.now()
    data = (json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8", "surrogateescape")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o664)
    try:
        if fcntl is not None:
            fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            written = os.write(fd, data)
            while written < len(data):  # a short write (signal, full pipe): finish it under the same lock
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            if fcntl is not None:
                fcntl.lockf(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def read_lines(path: Path) -> Iterator[dict]:
    """Every well-formed line of a manifest, in file order; a torn last line (a crash) is ignored."""
    try:
        fh = open(path, encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return
    with fh:
        for raw in fh:
            raw = raw.strip()
            if not raw:
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record


def latest_ok(path: Path) -> dict[str, dict]:
    """output path -> the last line that wrote it with status ok (for fast --skip-existing checks)."""
    out: dict[str, dict] = {}
    for record in read_lines(path):
        output = record.get("output")
        if output and record.get("status") == "ok":
            out[str(output)] = record
    return out
