"""A short composed video of two real public-domain faces, with ground-truth boxes and ids.

The astronaut (scikit-image ``astronaut()``) and the cameraman (``camera()``, grey) are cut out
head-and-shoulders and pasted on textured backgrounds. Scene 1: they walk towards each other
and cross (the cameraman passes in front), each goes behind a pillar (an occlusion), and the
astronaut leaves the frame on the right. A hard cut to scene 2 (another background): the
cameraman stands on the left and the astronaut walks back in from the right.

Ground truth: a face's box is where its face (the box BlazeFace finds on the source photo) was
pasted; it counts as visible when at least half of it is inside the frame and not covered by
the pillar or the other person.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WIDTH, HEIGHT = 384, 288
FRAMES = 84
CUT = 54  # first frame of scene 2
PILLAR = (250, 310)  # x range of the pillar in scene 1 (drawn over everyone)

# (crop y0, y1, x0, x1) in the source photo, and the face box (x1, y1, x2, y2) in the source
_ASTRONAUT_CROP = (30, 230, 130, 320)
_ASTRONAUT_FACE = (178.0, 83.0, 273.0, 178.0)
_CAMERA_CROP = (70, 260, 135, 310)
_CAMERA_FACE = (180.0, 122.0, 265.0, 207.0)


@dataclass(frozen=True)
class Scene:
    frames: list[np.ndarray]  # FRAMES x [H, W, 3] uint8
    gt: list[list[tuple[int, np.ndarray]]]  # per frame: (person 0 astronaut / 1 cameraman, box xyxy)


def _background(seed: int, tint: tuple[float, float, float]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = 0.55 + 0.25 * np.sin(xx / 37.0 + seed) * np.cos(yy / 29.0)
    img = base[..., None] * np.array(tint)[None, None] * 255 + rng.normal(0, 6, (HEIGHT, WIDTH, 1))
    return np.clip(img, 0, 255).astype(np.uint8)


def _positions(f: int) -> dict[int, tuple[int, int]]:
    """Top-left corner of each person's cut-out in frame f (absent people left out)."""
    if f < CUT:
        return {0: (-60 + 7 * f, 30), 1: (250 - 5 * f, 70)}
    out = {1: (10 + (f - CUT), 60)}
    if f >= CUT + 8:
        out[0] = (WIDTH - 40 - 6 * (f - CUT - 8), 40)
    return out


def compose(astronaut: np.ndarray, camera: np.ndarray) -> Scene:
    """Build the scene from ``skimage.data.astronaut()`` and ``skimage.data.camera()``."""
    cam_rgb = np.repeat(camera[..., None], 3, axis=2)
    cutouts = {}
    for person, (img, (y0, y1, x0, x1), face) in enumerate(
        ((astronaut, _ASTRONAUT_CROP, _ASTRONAUT_FACE), (cam_rgb, _CAMERA_CROP, _CAMERA_FACE))
    ):
        cutouts[person] = (img[y0:y1, x0:x1], np.array(face) - np.array([x0, y0, x0, y0], dtype=float))
    scenes = (_background(1, (0.45, 0.7, 0.9)), _background(2, (0.95, 0.55, 0.35)))
    frames, gt = [], []
    for f in range(FRAMES):
        canvas = scenes[0 if f < CUT else 1].copy()
        cover = np.zeros((HEIGHT, WIDTH), dtype=np.int64) - 1  # which person is on top per pixel
        pos = _positions(f)
        for person in sorted(pos):  # the cameraman (1) is pasted last: he passes in front
            patch, _ = cutouts[person]
            x, y = pos[person]
            _paste(canvas, patch, x, y)
            _paste(cover, np.full(patch.shape[:2], person), x, y)
        if f < CUT:
            canvas[:, PILLAR[0] : PILLAR[1]] = (90, 80, 70)
            cover[:, PILLAR[0] : PILLAR[1]] = -2
        boxes = []
        for person in sorted(pos):
            x, y = pos[person]
            box = cutouts[person][1] + np.array([x, y, x, y], dtype=float)
            if _visible(cover, box, person) >= 0.5:
                boxes.append((person, box))
        frames.append(canvas)
        gt.append(boxes)
    return Scene(frames=frames, gt=gt)


def _paste(canvas: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    h, w = patch.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, canvas.shape[1]), min(y + h, canvas.shape[0])
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = patch[y0 - y : y1 - y, x0 - x : x1 - x]


def _visible(cover: np.ndarray, box: np.ndarray, person: int) -> float:
    """Share of the box's pixels inside the frame where ``person`` is on top."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    area = max(1, (x1 - x0) * (y1 - y0))
    sub = cover[max(y0, 0) : max(min(y1, HEIGHT), 0), max(x0, 0) : max(min(x1, WIDTH), 0)]
    return float((sub == person).sum()) / area
