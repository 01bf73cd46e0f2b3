"""The overlay sink: once an output file is finished, its overlays are drawn from it.

An overlay is made from the finished output (rows with identity labels) and a fresh decode of the
input (facecli.overlay), so it needs nothing from the processing that made the rows: a resumed
run, a ``--jobs`` run and a ``--skip-existing`` rerun whose output exists but whose overlay does
not all draw the same picture. Overlays are written atomically; one that fails is one line on its
input's outcome (``overlay_error``) and never costs the output file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from facecli.overlay.paths import mirrored_path
from facecli.pipeline.plan import OverlayTarget, Target


class Outcome(Protocol):
    input: str
    status: str
    overlay: str | None
    overlay_error: str | None


def image_overlay_path(source: str, overlay: OverlayTarget) -> Path:
    """Where the annotated copy of one image goes."""
    assert overlay.image_dir is not None and overlay.image_root is not None
    return mirrored_path(source, overlay.image_root, overlay.image_dir)


def _image_written(path: Path) -> Path | None:
    """The annotated image as written (formats Pillow cannot write get ``.png`` appended), or None."""
    for candidate in (path, path.with_name(path.name + ".png")):
        if candidate.is_file():
            return candidate
    return None


def overlays_complete(target: Target) -> bool:
    """Every overlay of ``target`` exists (written atomically, so existing means complete)."""
    overlay = target.overlay
    if overlay is None:
        return True
    if overlay.videos:
        return all(dst.is_file() for _, dst in overlay.videos)
    return all(_image_written(image_overlay_path(s, overlay)) is not None for s in target.sources)


def overlay_location(target: Target) -> str | None:
    """What a manifest line names as a target's overlay: the file for one input, else the folder."""
    overlay = target.overlay
    if overlay is None:
        return None
    if overlay.videos:
        return str(overlay.videos[0][1]) if len(overlay.videos) == 1 else str(overlay.videos[0][1].parent)
    if len(target.sources) == 1:
        found = _image_written(image_overlay_path(target.sources[0], overlay))
        return str(found) if found else None
    return str(overlay.image_dir)


def render_overlays(target: Target, outcomes: list[Outcome], info: list[dict] | None = None) -> None:
    """Draw the overlays of a finished ``target.output`` for its inputs whose status is ok or skipped.

    Sets ``overlay`` (what was written) or ``overlay_error`` (one line) on those outcomes.

    Args:
        target: the output, finished, and where its overlays go.
        outcomes: the target's outcomes (one per input, or one for the whole target when it was
            skipped); changed in place.
        info: facts about the inputs from processing (``input``, ``mirrored``), when known.

    Raises:
        signals.Interrupted: the overlay being written is removed; finished ones are kept.
    """
    overlay = target.overlay
    if overlay is None:
        return
    by_source = _by_source(target, outcomes)
    if not by_source:
        return
    if overlay.videos:
        _videos(target, overlay, by_source, info or [])
    else:
        _images(target, overlay, by_source)


def _by_source(target: Target, outcomes: list[Outcome]) -> dict[str, Outcome]:
    """Input -> the outcome that stands for it, for inputs whose output rows exist (ok or skipped).

    A skipped output has one outcome for all its inputs (its ``input`` is their list)."""
    sources = set(target.sources)
    out: dict[str, Outcome] = {}
    for o in outcomes:
        if o.status not in ("ok", "skipped"):
            continue
        if o.input in sources:
            out[o.input] = o
        elif o.status == "skipped":
            for s in target.sources:
                out.setdefault(s, o)
    return out


def _note(outcome: Outcome, written: str | None = None, error: str | None = None) -> None:
    """One outcome may stand for several inputs (a skipped -o FILE output): keep the first error."""
    if error is not None:
        outcome.overlay_error = outcome.overlay_error or error
    elif written is not None and outcome.overlay is None:
        outcome.overlay = written


def _videos(target: Target, overlay: OverlayTarget, by_source: dict[str, Outcome], info: list[dict]) -> None:
    from facecli.overlay import OverlayError, render_overlay_video

    mirrored = {str(i.get("input")) for i in info if i.get("mirrored")}
    for source, dst in overlay.videos:
        outcome = by_source.get(source)
        if outcome is None:
            continue
        if source in mirrored:
            _note(outcome, error=f"{dst}: overlay not drawn: {source} is shown mirrored (display matrix), "
                                 "which overlays do not support")
            continue
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            render_overlay_video(target.output, source, dst, mesh=overlay.mesh, input_name=source, rotation="auto")
        except OverlayError as exc:
            _note(outcome, error=f"overlay not written: {exc}")
        except OSError as exc:
            _note(outcome, error=f"{dst}: overlay not written ({exc.strerror or _first_line(exc)})")
        except Exception as exc:  # noqa: BLE001 - a failing overlay must never cost the output
            _note(outcome, error=f"{dst}: overlay not written ({type(exc).__name__}: {_first_line(exc)})")
        else:
            _note(outcome, written=str(dst) if outcome.input == source else str(dst.parent))


def _images(target: Target, overlay: OverlayTarget, by_source: dict[str, Outcome]) -> None:
    from facecli.overlay import OverlayError, render_overlay_images

    assert overlay.image_dir is not None
    try:
        summary = render_overlay_images(target.output, overlay.image_dir, root=overlay.image_root, mesh=overlay.mesh)
    except OverlayError as exc:
        for o in by_source.values():
            _note(o, error=f"overlay not written: {exc}")
        return
    except Exception as exc:  # noqa: BLE001 - a failing overlay must never cost the output
        for o in by_source.values():
            _note(o, error=f"{overlay.image_dir}: overlays not written ({type(exc).__name__}: {_first_line(exc)})")
        return
    written = {str(p) for p in summary.written}
    for source, o in by_source.items():
        path = image_overlay_path(source, overlay)
        found = next((p for p in (str(path), str(path) + ".png") if p in written), None)
        if found is not None:
            _note(o, written=found if o.input == source else str(overlay.image_dir))
            continue
        line = next((e for e in summary.errors if e.startswith((source, str(path)))), None)
        _note(o, error=line or f"{path}: overlay not written")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
