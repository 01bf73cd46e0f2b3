"""Decoding and pixel checks shared by the overlay tests: what changed, and whether it is where a face is."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pandas as pd


def changed_pixels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixels more than 40 levels apart in some channel (far above re-encoding noise), bool[H, W]."""
    return (np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2)) > 40


def near_boxes(shape, boxes: np.ndarray) -> np.ndarray:
    """Where an overlay may draw: each box grown by 60% of its size (axes, gaze), the label line
    above it and the AU strip below it (both start at the box's left edge), plus 4 px of codec ringing."""
    mask = np.zeros(shape[:2], dtype=bool)
    for x1, y1, x2, y2 in boxes:
        grow = 0.6 * max(x2 - x1, y2 - y1)
        for bx1, by1, bx2, by2 in (
            (x1 - grow, y1 - grow, x2 + grow, y2 + grow),
            (x1, y1 - 20, x1 + 150, y1),
            (x1, y2, x1 + 120, y2 + 60),
        ):
            top, bottom = max(0, int(by1) - 4), max(0, int(np.ceil(by2)) + 4)
            mask[top:bottom, max(0, int(bx1) - 4): max(0, int(np.ceil(bx2)) + 4)] = True
    return mask


def outline_hits(changed: np.ndarray, box: np.ndarray) -> float:
    """Fraction of the box outline (within 2 px) where pixels changed."""
    h, w = changed.shape
    x1, y1, x2, y2 = np.round(box).astype(int)
    xs, ys = np.arange(max(x1, 0), min(x2, w - 1) + 1), np.arange(max(y1, 0), min(y2, h - 1) + 1)
    hits = []
    for y in (y1, y2):
        if 0 <= y < h:
            hits += [changed[max(0, y - 2): y + 3, x].any() for x in xs]
    for x in (x1, x2):
        if 0 <= x < w:
            hits += [changed[y, max(0, x - 2): x + 3].any() for y in ys]
    return float(np.mean(hits)) if hits else 0.0


def decode(path: Path) -> tuple[list[float], list[np.ndarray]]:
    times, images = [], []
    with av.open(str(path)) as box:
        for frame in box.decode(video=0):
            times.append(float(frame.time))
            images.append(frame.to_ndarray(format="rgb24"))
    return times, images


def boxes_by_frame(table: Path, input_name: str) -> dict[int, np.ndarray]:
    df = pd.read_csv(table) if table.suffix == ".csv" else pd.read_parquet(table)
    df = df[(df["input"] == input_name) & (df["FaceScore"] > 0)]
    out = {}
    for frame, g in df.groupby("frame"):
        x, y = g["FaceRectX"].to_numpy(), g["FaceRectY"].to_numpy()
        out[int(frame)] = np.stack([x, y, x + g["FaceRectWidth"].to_numpy(), y + g["FaceRectHeight"].to_numpy()], 1)
    return out


def check_overlay(
    overlay: Path, reference: Path, boxes: dict[int, np.ndarray], *, outline: float = 0.6, turns: int = 0,
    time_atol: float = 1e-6,
) -> None:
    """Same frames and times as ``reference`` (turned ``turns`` quarters counter-clockwise); drawn
    pixels around the boxes only; the other frames unchanged up to codec error.

    ``time_atol``: Matroska stores times in milliseconds, so a ``.mkv`` overlay matches to 1e-3 s.
    """
    times_in, frames_in = decode(reference)
    frames_in = [np.rot90(f, turns) for f in frames_in]
    times_out, frames_out = decode(overlay)
    assert len(frames_out) == len(frames_in)
    assert np.allclose(times_out, times_in, rtol=0, atol=time_atol)
    assert frames_out[0].shape == frames_in[0].shape
    for i, (a, b) in enumerate(zip(frames_in, frames_out)):
        changed = changed_pixels(a, b)
        if i in boxes:
            near = near_boxes(a.shape, boxes[i])
            assert changed[~near].sum() <= 0.001 * changed.size, f"frame {i}: drawing away from the faces"
            for box in boxes[i]:
                assert outline_hits(changed, box) > outline, f"frame {i}: no box drawn at {box}"
        else:
            diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
            assert diff.mean() < 2.0 and np.percentile(diff, 99.9) < 30, f"frame {i} differs beyond codec error"
            assert changed.mean() < 0.0005, f"frame {i} was drawn"  # a drawn face changes hundreds of pixels
