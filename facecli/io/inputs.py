"""Finding the inputs of a run: files, directories (recursive), glob patterns and lists of paths.

The order is deterministic: inputs in the order given, each directory walked in sorted order,
each glob's matches sorted. A file named twice (by a folder and a pattern, say) is kept once,
at its first place. A path that yields nothing is kept as an item with an error, so the run
reports it on one line (and in the manifest) and goes on with the others.
"""

from __future__ import annotations

import glob
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts", ".mts"}
)
_GLOB_CHARS = "*?["


class InputError(Exception):
    """One input cannot be used; str(error) is one line naming the file and the reason."""


@dataclass(frozen=True)
class InputItem:
    """One file to process, or an input that yields nothing and why.

    path: the file as the user named it or as it was found under a folder they named.
    error: one line saying why the input cannot be used, or None.
    root: the folder the file was found under (the named folder), or the file's own folder;
        outputs in an output folder mirror ``path`` relative to the common root of all items.
    """

    path: str
    error: str | None = None
    root: str | None = None


@dataclass(frozen=True)
class InputListing:
    """What a run's inputs expand to.

    items: files to process and inputs that failed, in the run's order, duplicates removed.
    notes: warning lines (files of other types ignored, symbolic-link loops skipped).
    """

    items: tuple[InputItem, ...]
    notes: tuple[str, ...] = ()

    @property
    def usable(self) -> tuple[InputItem, ...]:
        return tuple(item for item in self.items if item.error is None)


def read_path_list(source: str) -> list[str]:
    """Paths from a ``--files-from`` list: one per line, ``-`` reads standard input; blank lines skipped.

    Raises:
        OSError: the list cannot be read.
    """
    if source == "-":
        text = sys.stdin.read()
    else:
        with open(source, encoding="utf-8", errors="surrogateescape") as fh:
            text = fh.read()
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


def expand_inputs(
    inputs: tuple[str, ...] | list[str], suffixes: frozenset[str] | set[str], listed: tuple[str, ...] | list[str] = ()
) -> InputListing:
    """Expand command-line inputs and listed paths into an ordered, duplicate-free list of files.

    Args:
        inputs: paths, folders or glob patterns as given on the command line.
        suffixes: file suffixes (lower case, with the dot) taken from folders and patterns; a file
            named explicitly is tried whatever its suffix.
        listed: paths from ``--files-from``, taken literally (no pattern expansion).

    Returns:
        InputListing; an input that yields nothing appears as an item with an error.
    """
    items: list[InputItem] = []
    notes: list[str] = []
    ignored: Counter[str] = Counter()
    for given in inputs:
        if any(ch in given for ch in _GLOB_CHARS) and not os.path.lexists(given):
            matches = sorted(glob.glob(given, recursive=True))
            if not matches:
                items.append(InputItem(given, "no file matches this pattern"))
            for match in matches:
                if os.path.isdir(match):
                    items.extend(_walk(match, suffixes, notes, ignored))
                elif Path(match).suffix.lower() in suffixes:
                    items.append(InputItem(match, root=os.path.dirname(match) or "."))
                else:
                    ignored[Path(match).suffix.lower() or "no extension"] += 1
            continue
        items.extend(_one_path(given, suffixes, notes, ignored))
    for given in listed:
        items.extend(_one_path(given, suffixes, notes, ignored))
    if ignored:
        kinds = ", ".join(f"{n} {suffix}" for suffix, n in sorted(ignored.items()))
        notes.append(f"ignored {sum(ignored.values())} file(s) of other types in the input folders ({kinds})")
    return InputListing(items=_dedupe(items), notes=tuple(notes))


def _one_path(given: str, suffixes: frozenset[str] | set[str], notes: list[str], ignored: Counter[str]) -> list[InputItem]:
    if os.path.isdir(given):
        found = _walk(given, suffixes, notes, ignored)
        return found or [InputItem(given, "folder holds no supported media files")]
    if os.path.islink(given) and not os.path.exists(given):
        return [InputItem(given, "broken symbolic link")]
    if not os.path.exists(given):
        return [InputItem(given, "no such file")]
    return [InputItem(given, root=os.path.dirname(given) or ".")]


def _walk(top: str, suffixes: frozenset[str] | set[str], notes: list[str], ignored: Counter[str]) -> list[InputItem]:
    """Media files below ``top`` in sorted order; hidden entries skipped, symbolic-link loops broken."""
    out: list[InputItem] = []
    problems: list[InputItem] = []

    def visit(folder: str, ancestors: frozenset[str]) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as exc:
            problems.append(InputItem(folder, f"cannot list folder ({exc.strerror or exc})"))
            return
        for entry in entries:
            path = os.path.join(folder, entry.name)
            try:
                is_dir = entry.is_dir()  # follows links
            except OSError:
                is_dir = False
            if is_dir:
                real = os.path.realpath(path)
                if real in ancestors:
                    notes.append(f"{path}: symbolic link loop skipped (points back to {real})")
                    continue
                visit(path, ancestors | {real})
            elif entry.is_symlink() and not os.path.exists(path):
                problems.append(InputItem(path, "broken symbolic link"))
            elif Path(entry.name).suffix.lower() in suffixes:
                out.append(InputItem(path, root=top))
            else:
                ignored[Path(entry.name).suffix.lower() or "no extension"] += 1

    visit(top, frozenset({os.path.realpath(top)}))
    return out + problems


def _dedupe(items: list[InputItem]) -> tuple[InputItem, ...]:
    seen: set[str] = set()
    out = []
    for item in items:
        key = os.path.abspath(item.path) if item.error is None else f"\0{item.path}\0{item.error}"
        if key not in seen:
            seen.add(key)
            out.append(item)
    return tuple(out)


def common_root(items: tuple[InputItem, ...] | list[InputItem]) -> str:
    """The deepest folder holding every item's root (absolute path)."""
    roots = [os.path.abspath(item.root or os.path.dirname(item.path) or ".") for item in items]
    if not roots:
        return os.path.abspath(".")
    return os.path.commonpath(roots)
