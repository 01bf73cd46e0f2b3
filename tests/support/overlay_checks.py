"""Pixel checks shared by the overlay tests: what changed, and whether it is where a face is."""

from __future__ import annotations

import numpy as np


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
