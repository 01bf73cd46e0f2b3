"""Video orientation: the display matrix a phone writes instead of rotating the pixels.

A video recorded upright on a phone is usually stored sideways (e.g. 1920x1080) with a display
matrix (MP4/MOV ``tkhd``, Matroska projection) telling players to turn it. FFmpeg hands the matrix
to every decoded frame as ``DISPLAYMATRIX`` side data; this module reads it and turns the decoded
RGB array the way a player shows it.

The matrix is 9 int32 in FFmpeg's layout ``[a, b, u, c, d, v, x, y, w]`` (``a..d, x, y`` in 16.16
fixed point). A stored pixel at column ``p``, row ``q`` (rows counted downwards) is displayed at
``p' = a*p + c*q + x``, ``q' = b*p + d*q + y``. Every right-angle matrix is a rotation followed,
or not, by a left-right mirror, which is how :class:`Orientation` describes it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Orientation:
    """How a player turns the stored picture to show it.

    rotation: degrees clockwise, one of 0, 90, 180, 270 (the value of the legacy MP4 ``rotate`` tag;
        FFmpeg's ``av_display_rotation_get`` / PyAV's ``VideoFrame.rotation`` report ``-rotation``).
    mirrored: after the rotation, the picture is mirrored left-right.
    """

    rotation: int = 0
    mirrored: bool = False

    @property
    def swaps_axes(self) -> bool:
        """True when the displayed width is the stored height (90 or 270 degrees)."""
        return self.rotation in (90, 270)

    def displayed_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) as displayed, from the stored (width, height) in pixels."""
        return (height, width) if self.swaps_axes else (width, height)


UPRIGHT = Orientation()


def orientation_from_matrix(matrix: Sequence[int]) -> Orientation:
    """The Orientation of an FFmpeg display matrix (9 ints, see the module docstring).

    Matrices that are not a right-angle rotation (within 1 degree), possibly mirrored, are
    returned as upright: players would resample such a picture, facecli leaves it as stored.
    """
    if len(matrix) != 9:
        raise ValueError(f"a display matrix has 9 entries, got {len(matrix)}")
    a, b, c, d = (v / 65536.0 for v in (matrix[0], matrix[1], matrix[3], matrix[4]))
    det = a * d - b * c
    if det == 0:
        return UPRIGHT
    mirrored = det < 0
    # undo the mirror (negate p') to leave a pure rotation p' = cos*p - sin*q, q' = sin*p + cos*q
    cos, sin = (-a if mirrored else a), b
    degrees = math.degrees(math.atan2(sin, cos)) % 360.0
    nearest = int(round(degrees / 90.0)) % 4 * 90
    if abs((degrees - nearest + 180.0) % 360.0 - 180.0) > 1.0:
        return UPRIGHT
    return Orientation(nearest, mirrored)


def orientation_from_side_data(data: bytes | None) -> Orientation:
    """The Orientation of raw ``DISPLAYMATRIX`` side data (36 bytes, native int32), or upright."""
    if not data or len(data) < 36:
        return UPRIGHT
    return orientation_from_matrix(struct.unpack("=9i", bytes(data[:36])))


def to_upright(image: np.ndarray, orientation: Orientation) -> np.ndarray:
    """Turn a stored HxWxC image as a player shows it.

    Args:
        image: ndarray[H, W, C] as decoded.
        orientation: what the display matrix says.

    Returns:
        ndarray[H', W', C], C-contiguous ((H', W') = (W, H) for 90 and 270 degrees); the input
        itself when the orientation is upright.
    """
    if orientation == UPRIGHT:
        return image
    out = np.rot90(image, k=-orientation.rotation // 90, axes=(0, 1))  # negative k: clockwise
    if orientation.mirrored:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)
