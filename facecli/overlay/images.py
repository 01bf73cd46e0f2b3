"""Annotated images for ``facecli detect`` outputs: one per input image, mirrored under a folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facecli.overlay.draw import OverlayStyle, draw_faces
from facecli.overlay.paths import atomic_path, common_root, mirrored_path
from facecli.overlay.rows import OverlayError, read_frames, read_inputs

# Pillow writer options per suffix; anything Pillow cannot write is saved as PNG (name + ".png").
_SAVE_OPTIONS = {".jpg": {"quality": 95}, ".jpeg": {"quality": 95}, ".webp": {"quality": 95}}


@dataclass(frozen=True)
class ImageOverlaySummary:
    """What ``render_overlay_images`` wrote."""

    written: tuple[Path, ...]  # annotated images, in table order
    errors: tuple[str, ...]  # one line per image that could not be drawn (the others were written)


def render_overlay_images(
    table: str | Path,
    out_dir: str | Path,
    *,
    root: str | Path | None = None,
    mesh: bool = False,
    style: OverlayStyle | None = None,
) -> ImageOverlaySummary:
    """Draw the faces of a ``facecli detect`` table onto its images.

    Args:
        table: a finished facecli output (Parquet or CSV) of still images.
        out_dir: where the annotated images go (created if missing); each keeps its name and size, at
            its path relative to ``root`` (``root/a/x.jpg`` -> ``out_dir/a/x.jpg``).
        root: the folder the mirrored paths start from; default: the deepest folder holding every
            input of the table.
        mesh: draw the 478-point mesh instead of the 68 landmarks (when the table has mesh columns).
        style: drawing sizes (default: scaled to each image).

    Returns:
        The files written and one line per image that failed (unreadable, changed size, unwritable).

    Raises:
        OverlayError: the table cannot be read (nothing is written then).
    """
    from facecli.io.images import InputError, read_image

    table, out_dir = Path(table), Path(out_dir)
    if root is None:
        try:
            root = common_root(read_inputs(table))
        except ValueError:
            raise OverlayError(f"{table}: no rows") from None
    written: list[Path] = []
    errors: list[str] = []
    for rows in read_frames(table, None, mesh):
        try:
            image = read_image(rows.input).permute(1, 2, 0).numpy()
        except InputError as exc:
            errors.append(str(exc))
            continue
        if image.shape[:2] != (rows.height, rows.width):
            errors.append(
                f"{rows.input}: image is {image.shape[1]}x{image.shape[0]} now, "
                f"{rows.width}x{rows.height} in {table}"
            )
            continue
        target = mirrored_path(rows.input, root, out_dir)
        try:
            written.append(_save(draw_faces(image, rows.faces, style), target))
        except (OSError, ValueError) as exc:
            errors.append(f"{target}: cannot write ({_reason(exc)})")
    return ImageOverlaySummary(tuple(written), tuple(errors))


def _save(image: np.ndarray, target: Path) -> Path:
    """Write atomically; a suffix Pillow cannot write becomes ``<name>.png``."""
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(image, "RGB")
    suffix = target.suffix.lower()
    if suffix not in Image.registered_extensions() or Image.registered_extensions()[suffix] not in Image.SAVE:
        target = target.with_name(target.name + ".png")
        suffix = ".png"
    with atomic_path(target) as part:
        picture.save(part, format=Image.registered_extensions()[suffix], **_SAVE_OPTIONS.get(suffix, {}))
    return target


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__
