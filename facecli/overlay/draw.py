"""Drawing one frame's faces: box, landmarks or mesh, head-pose axes, gaze, label, emotion, AUs.

Images are ``numpy`` arrays ``uint8[H, W, 3]`` RGB (what PyAV decodes to and Pillow reads);
a ``Tensor[3, H, W]`` converts with ``t.permute(1, 2, 0).numpy()``. Everything is drawn with
Pillow's ``ImageDraw`` and ``ImageFont``; this module only computes where.

Angles follow facecli's convention (radians; image x right, y down):

* ``+Pitch``: head up (chin raised), so the nose axis points up the image;
* ``+Yaw``: head turned to the subject's right, so the nose axis points to the viewer's left;
* ``+Roll``: head tilted toward the subject's right shoulder, so the top of the head moves to
  the viewer's left (counter-clockwise as displayed).

``gaze_pitch`` / ``gaze_yaw`` use the same signs (+pitch = looking up, +yaw = looking to the
subject's right).
"""

from __future__ import annotations

import functools
import re
import zlib
from dataclasses import dataclass

import numpy as np

# Distinct colours for identities / tracks, picked for contrast on natural images.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 64, 64), (64, 160, 255), (64, 220, 96), (255, 180, 0), (200, 80, 255), (0, 220, 220),
    (255, 110, 200), (170, 230, 30), (255, 140, 60), (120, 120, 255), (0, 190, 140), (230, 230, 70),
)
UNLABELLED = (235, 235, 235)  # faces without an identity or track
AXIS_COLOURS = ((230, 30, 30), (30, 200, 30), (40, 90, 255))  # head x (viewer's right), y (up), z (nose)
GAZE_COLOUR = (255, 230, 0)

# dlib-68 contours: (first, last, closed)
_CONTOURS = ((0, 16, False), (17, 21, False), (22, 26, False), (27, 30, False), (31, 35, False),
             (36, 41, True), (42, 47, True), (48, 59, True), (60, 67, True))
NOSE_TIP = 33  # dlib-68 index of mesh point 1 (the nose tip) in facecli's landmark subset
RIGHT_EYE = slice(36, 42)  # the subject's right eye (viewer's left)
LEFT_EYE = slice(42, 48)


@dataclass(frozen=True)
class FrameFaces:
    """The faces of one frame as the overlay draws them; optional groups are None when the table lacks them.

    boxes: float32[N, 4] (x1, y1, x2, y2) frame pixels; only real faces (no empty-frame rows).
    labels: len N, text naming the face (identity and/or track), "" for none.
    colour_keys: len N, what picks the face's colour (identity, else track), "" for none.
    landmarks: float32[N, 68, 2] (x, y) pixels (NaN where unknown).
    mesh: float32[N, P, 2] (x, y) pixels of the mesh (P = 478), drawn instead of the landmarks.
    pose: float32[N, 3] (pitch, roll, yaw) radians, facecli's convention (module docstring).
    gaze: float32[N, 2] (pitch, yaw) radians, same convention.
    emotions: float32[N, E] probabilities, columns named by ``emotion_names``.
    aus: float32[N, A] probabilities 0..1, columns named by ``au_names``.
    """

    boxes: np.ndarray
    labels: tuple[str, ...]
    colour_keys: tuple[str, ...]
    landmarks: np.ndarray | None = None
    mesh: np.ndarray | None = None
    pose: np.ndarray | None = None
    gaze: np.ndarray | None = None
    emotions: np.ndarray | None = None
    emotion_names: tuple[str, ...] = ()
    aus: np.ndarray | None = None
    au_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = self.boxes.shape[0]
        if self.boxes.shape != (n, 4) or len(self.labels) != n or len(self.colour_keys) != n:
            raise ValueError(f"FrameFaces: boxes {self.boxes.shape}, {len(self.labels)} labels for {n} faces")
        for name in ("landmarks", "mesh", "pose", "gaze", "emotions", "aus"):
            arr = getattr(self, name)
            if arr is not None and arr.shape[0] != n:
                raise ValueError(f"FrameFaces.{name} has {arr.shape[0]} rows for {n} faces")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@dataclass(frozen=True)
class OverlayStyle:
    """How big things are drawn. Sizes left as None scale with the frame (about 2 px lines at 720p)."""

    line_width: int | None = None  # box and axis line width in pixels
    font_size: int | None = None  # label text height in pixels
    top_aus: int = 5  # AUs in the bar strip (the strongest of each face)
    axis_length: float = 0.5  # head-pose axes, as a fraction of the box width
    gaze_length: float = 0.8  # gaze arrows, as a fraction of the box width

    def sizes(self, height: int, width: int) -> tuple[int, int]:
        """(line width, font size) for a frame of this size."""
        short = min(height, width)
        line = self.line_width or max(1, round(short / 360))
        font = self.font_size or max(9, round(short / 50))
        return line, font


def colour_for(key: str) -> tuple[int, int, int]:
    """A stable colour for an identity or track label: ``Person_3`` and ``track 3`` map by their number
    (so the first identities never share a colour), other text by its CRC-32; "" is light grey."""
    if not key:
        return UNLABELLED
    match = re.search(r"(\d+)$", key)
    index = int(match.group(1)) if match else zlib.crc32(key.encode())
    return PALETTE[index % len(PALETTE)]


def pose_axes(pose: np.ndarray) -> np.ndarray:
    """Image-plane directions of the head's axes (orthographic projection, unit length in 3D).

    Args:
        pose: float[N, 3] (pitch, roll, yaw) radians, facecli's convention.

    Returns:
        float32[N, 3, 2] (dx, dy) per axis: 0 = the head's x axis (toward the viewer's right for a
        frontal face), 1 = up through the top of the head, 2 = out through the nose (toward the
        camera; zero length for a frontal face).
    """
    pose = np.asarray(pose, dtype=np.float64).reshape(-1, 3)
    pitch, roll, yaw = pose[:, 0], pose[:, 1], pose[:, 2]
    # Camera frame x right, y down, z away. R = Rz(-roll) Ry(yaw) Rx(-pitch), right-handed rotations:
    # Rx(-pitch) lifts the nose for +pitch, Ry(yaw) swings it to image -x, Rz(-roll) turns the
    # head counter-clockwise as displayed.
    rot = _rz(-roll) @ _ry(yaw) @ _rx(-pitch)  # [N, 3, 3]
    frontal = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])  # rows: x, up, nose
    axes = np.einsum("nij,kj->nki", rot, frontal)  # [N, 3 axes, 3]
    return axes[..., :2].astype(np.float32)


def gaze_directions(gaze: np.ndarray) -> np.ndarray:
    """Image-plane direction of the gaze (orthographic projection of the unit gaze vector).

    Args:
        gaze: float[N, 2] (pitch, yaw) radians, facecli's convention.

    Returns:
        float32[N, 2] (dx, dy): (0, 0) looking into the camera, (0, -1) looking straight up.
    """
    gaze = np.asarray(gaze, dtype=np.float64).reshape(-1, 2)
    pitch, yaw = gaze[:, 0], gaze[:, 1]
    return np.stack([-np.cos(pitch) * np.sin(yaw), -np.sin(pitch)], axis=1).astype(np.float32)


def _rx(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([o, z, z, z, c, -s, z, s, c], axis=-1).reshape(-1, 3, 3)


def _ry(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([c, z, s, z, o, z, -s, z, c], axis=-1).reshape(-1, 3, 3)


def _rz(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([c, -s, z, s, c, z, z, z, o], axis=-1).reshape(-1, 3, 3)


def draw_faces(image: np.ndarray, faces: FrameFaces, style: OverlayStyle | None = None) -> np.ndarray:
    """Draw every face of one frame.

    Args:
        image: uint8[H, W, 3] RGB; not modified.
        faces: the frame's faces (boxes and the groups the table has).
        style: sizes; default: scaled to the frame.

    Returns:
        uint8[H, W, 3] RGB, a new array (``image`` itself when there is no face).
    """
    from PIL import Image, ImageDraw

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"draw_faces: expected uint8[H, W, 3], got {image.dtype}{list(image.shape)}")
    if len(faces) == 0:
        return image
    style = style or OverlayStyle()
    canvas = Image.fromarray(np.ascontiguousarray(image), "RGB")
    draw = ImageDraw.Draw(canvas)
    line, font_px = style.sizes(image.shape[0], image.shape[1])
    axes = pose_axes(faces.pose) if faces.pose is not None else None
    gaze = gaze_directions(faces.gaze) if faces.gaze is not None else None
    for i in range(len(faces)):
        box = faces.boxes[i]
        if not np.isfinite(box).all():
            continue
        colour = colour_for(faces.colour_keys[i])
        width = float(box[2] - box[0])
        lmk = faces.landmarks[i] if faces.landmarks is not None else None
        if faces.mesh is not None:
            _points(draw, faces.mesh[i], _lighter(colour), line)
        elif lmk is not None:
            _landmarks(draw, lmk, colour, line)
        draw.rectangle([float(box[0]), float(box[1]), float(box[2]), float(box[3])], outline=colour, width=line)
        nose = _nose(lmk, box)
        if axes is not None and np.isfinite(axes[i]).all():
            for k in (2, 1, 0):  # nose axis underneath
                tip = nose + axes[i, k] * style.axis_length * width
                draw.line([tuple(nose), tuple(tip)], fill=AXIS_COLOURS[k], width=line + 1)
        if gaze is not None and np.isfinite(gaze[i]).all():
            for eye in _eyes(lmk, nose):
                _arrow(draw, eye, eye + gaze[i] * style.gaze_length * width, GAZE_COLOUR, line)
        header = _header(faces, i)
        panel = _au_rows(faces, i, style.top_aus)
        _text_panels(draw, box, header, panel, colour, font_px, canvas.size)
    return np.asarray(canvas)


def _header(faces: FrameFaces, i: int) -> str:
    parts = [faces.labels[i]] if faces.labels[i] else []
    if faces.emotions is not None and faces.emotions.shape[1] and np.isfinite(faces.emotions[i]).any():
        probs = np.nan_to_num(faces.emotions[i], nan=-1.0)
        top = int(np.argmax(probs))
        parts.append(f"{faces.emotion_names[top]} {probs[top]:.2f}")
    return "  ".join(parts)


def _au_rows(faces: FrameFaces, i: int, top: int) -> list[tuple[str, float]]:
    if faces.aus is None or top <= 0 or not faces.aus.shape[1]:
        return []
    probs = faces.aus[i]
    order = [k for k in np.argsort(-np.nan_to_num(probs, nan=-1.0), kind="stable") if np.isfinite(probs[k])]
    return [(faces.au_names[k], float(np.clip(probs[k], 0.0, 1.0))) for k in order[:top]]


def _nose(lmk: np.ndarray | None, box: np.ndarray) -> np.ndarray:
    if lmk is not None and np.isfinite(lmk[NOSE_TIP]).all():
        return lmk[NOSE_TIP].astype(np.float64)
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], dtype=np.float64)


def _eyes(lmk: np.ndarray | None, fallback: np.ndarray) -> list[np.ndarray]:
    if lmk is None:
        return [fallback]
    centres = [lmk[RIGHT_EYE].mean(axis=0), lmk[LEFT_EYE].mean(axis=0)]
    found = [c.astype(np.float64) for c in centres if np.isfinite(c).all()]
    return found or [fallback]


def _landmarks(draw, lmk: np.ndarray, colour: tuple[int, int, int], line: int) -> None:
    thin = max(1, line // 2)
    for first, last, closed in _CONTOURS:
        pts = lmk[first: last + 1]
        if not np.isfinite(pts).all():
            continue
        seq = [tuple(p) for p in pts.tolist()]
        draw.line(seq + seq[:1] if closed else seq, fill=colour, width=thin)
    r = max(1.0, line * 0.75)
    for x, y in lmk[np.isfinite(lmk).all(axis=1)].tolist():
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, 255))


def _points(draw, pts: np.ndarray, colour: tuple[int, int, int], line: int) -> None:
    ok = pts[np.isfinite(pts).all(axis=1)]
    if line > 1:  # 2x2 dots from about 720p up, single pixels below
        ok = np.concatenate([ok, ok + (1, 0), ok + (0, 1), ok + (1, 1)])
    draw.point([tuple(p) for p in ok.tolist()], fill=colour)


def _arrow(draw, start: np.ndarray, end: np.ndarray, colour: tuple[int, int, int], line: int) -> None:
    draw.line([tuple(start), tuple(end)], fill=colour, width=line + 1)
    vec = end - start
    length = float(np.hypot(*vec))
    if length < 2:
        return
    unit = vec / length
    normal = np.array([-unit[1], unit[0]])
    head = min(length * 0.4, 4.0 + 3.0 * line)
    base = end - unit * head
    draw.polygon([tuple(end), tuple(base + normal * head * 0.5), tuple(base - normal * head * 0.5)], fill=colour)


def _text_panels(draw, box, header: str, rows: list[tuple[str, float]], colour, font_px: int, size) -> None:
    """The label/emotion line above the box and the AU bar strip below it, kept inside the frame."""
    width_px, height_px = size
    if header:
        font = _font(font_px)
        left, top, right, bottom = draw.textbbox((0, 0), header, font=font)
        w, h = right - left + 4, bottom - top + 4
        x = float(np.clip(box[0], 0, max(0, width_px - w)))
        y = float(np.clip(box[1] - h, 0, max(0, height_px - h)))
        draw.rectangle([x, y, x + w, y + h], fill=colour)
        draw.text((x + 2 - left, y + 2 - top), header, fill=_ink(colour), font=font)
    if rows:
        small = _font(max(8, round(font_px * 0.8)))
        left, top, right, bottom = draw.textbbox((0, 0), "AU00", font=small)
        name_w, row_h = right - left + 3, bottom - top + 3
        bar_w = max(20, 3 * name_w)
        w, h = name_w + bar_w + 4, row_h * len(rows) + 2
        x = float(np.clip(box[0], 0, max(0, width_px - w)))
        y = float(np.clip(box[3] + 2, 0, max(0, height_px - h)))
        draw.rectangle([x, y, x + w, y + h], fill=(20, 20, 20))
        for k, (name, p) in enumerate(rows):
            ry = y + 1 + k * row_h
            draw.text((x + 2 - left, ry + 1 - top), name, fill=(240, 240, 240), font=small)
            bx = x + 2 + name_w
            draw.rectangle([bx, ry + 2, bx + bar_w, ry + row_h - 2], outline=(90, 90, 90))
            if p > 0:
                draw.rectangle([bx, ry + 2, bx + p * bar_w, ry + row_h - 2], fill=colour)


@functools.lru_cache(maxsize=16)
def _font(px: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)  # Pillow's bundled scalable font (needs FreeType)
    except (OSError, TypeError, ImportError):
        return ImageFont.load_default()


def _ink(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    luma = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def _lighter(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(int(c + (255 - c) * 0.45) for c in colour)  # type: ignore[return-value]
