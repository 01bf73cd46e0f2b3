"""Where overlays go: atomic writes beside the target, and output paths mirrored from the inputs."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary name beside ``target``, renamed over it when the block succeeds, removed otherwise.

    The temporary name keeps the target's suffix (``.<stem>.part-<pid><suffix>``) so that writers
    which choose a format by extension (PyAV, Pillow) pick the target's. Any exception, including
    KeyboardInterrupt and the SystemExit of a SIGTERM handler, removes it.
    """
    target = Path(target)
    part = target.with_name(f".{target.stem}.part-{os.getpid()}{target.suffix}")
    try:
        yield part
        os.replace(part, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise


def common_root(paths: Iterable[str | Path]) -> Path:
    """The deepest folder holding every path (their own folder for a single file).

    Raises:
        ValueError: no paths, or paths on different drives.
    """
    root: str | None = None
    for p in paths:
        folder = os.path.dirname(os.path.abspath(p))
        root = folder if root is None else os.path.commonpath([root, folder])
    if root is None:
        raise ValueError("no paths")
    return Path(root)


def mirrored_path(source: str | Path, root: str | Path, out_dir: str | Path, suffix: str | None = None) -> Path:
    """``out_dir`` / (``source`` relative to ``root``), optionally with another suffix.

    ``facecli video a/x.mp4 b/y.mov --overlay OV/`` -> ``OV/a/x.mp4``, ``OV/b/y.mp4`` (root = the common folder).
    """
    rel = Path(os.path.relpath(os.path.abspath(source), os.path.abspath(root)))
    if rel.parts and rel.parts[0] == os.pardir:  # source outside root: keep only its name
        rel = Path(rel.name)
    out = Path(out_dir) / rel
    return out.with_suffix(suffix) if suffix is not None else out
