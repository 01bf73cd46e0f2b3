"""Tiled BlazeFace detection: small and large faces alike, in frames of any size.

MediaPipe letterboxes the whole frame to the network's 128 x 128 input, so a face narrower than
about a fifth of the frame's long side is lost. Here the short-range network also scans the frame
at finer scales, each cut into overlapping windows:

* **Levels.** Level ``k`` samples the frame at ``scale_k`` input pixels per frame pixel so that its
  faces are :data:`SCAN_FACE` to ``SCAN_FACE * LEVEL_RATIO`` input pixels wide, the range in which
  the network finds nearly every face when it runs on a large input (measured: all of 90 faces of
  24 to 75 pixels on composed 1024 x 576 frames, 84 of 90 at 20 pixels, 32 of 90 at 14). Level 0
  starts at the smallest face wanted (``min_face`` frame pixels), each further level at a face
  :data:`LEVEL_RATIO` times larger, until the faces reach the last level: MediaPipe's own whole-frame
  letterbox, which finds every face from about a fifth of the long side up to one filling the frame.
* **Windows.** The network is fully convolutional, so one level could be one large input; it is
  cut into windows of at most :data:`MAX_WINDOW` pixels a side that overlap by :data:`OVERLAP` pixels
  (more than the largest face a level keeps), to bound memory. Each window is sampled straight from
  the uint8 frame (bilinear, four taps per pixel, black outside the frame), never from a float copy
  of the frame. A window keeps the faces whose centre lies in its *core* (the cores of a level tile
  the frame without overlap), so a face on a window border is kept once, by a window that holds
  all of it.
* **Sizes.** A level keeps faces from ``1 / SLACK`` of its smallest to ``UPPER_SLACK`` times its
  largest (the finest level keeps every smaller face it finds, the letterbox every larger one), so
  a face near the border between two levels is found by one or both, never by neither. The upper
  margin is narrow: above about 66 input pixels the network also sees parts of large faces and
  round emblems as faces (a mission patch at 72 px scored 0.76), while the wider lower margin
  covers the next level's less sure small end (a profile face of 72 px, measured 62 px at one
  level, was not found at the next). A frame-filling face is kept only by the letterbox, not as
  parts found at fine levels.
* **Merge.** All kept detections of a frame go through MediaPipe's weighted non-maximum suppression
  (IoU > 0.3 clusters averaged by score); then a part of a face found as a small face (mostly
  inside the region of a face at least twice its size that scores better) is dropped.
* **Score.** :data:`TILED_THRESHOLD` (0.7) rather than MediaPipe's 0.5, which a scan of many more
  windows turns into false faces on galaxies, text and upscaled photos.

The finest level is coarsened when it would exceed :data:`MAX_SCAN_PIXELS` input pixels per frame
(frames above about 3200 x 1900 at the default ``min_face``), so the cost and the memory per frame
stay bounded; the smallest face found then grows with the frame.

The finest level is most of the cost (at 720p and the default ``min_face`` it samples the frame
at full size: about 80% of the input pixels). A *coarse* scan (``detect(..., coarse=True)``)
leaves it out and looks for faces from :meth:`TiledDetector.coarse_min_face` up; the follower of
``--detect-every`` runs it on most of its scheduled detections and keeps following the smaller
faces meanwhile (:mod:`facecli.pipeline.follow`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from facecli.models.lite.blazeface import (
    NUM_KEYPOINTS,
    VARIANTS,
    BlazeFaceDetector,
    anchor_pixels,
    warp_taps,
    weighted_nms,
)
from facecli.types import Detections

SCAN_FACE = 24.0  # input pixels: the smallest face of a level (the network's reliable lower end)
LEVEL_RATIO = 2.5  # each level's smallest face is this many times the previous level's
SLACK = 1.25  # a level keeps faces down to this factor below its own range
UPPER_SLACK = 1.1  # ... and up to this factor above it (66 input pixels)
OVERLAP = 96  # input pixels shared by neighbouring windows (> the largest face a level keeps, 66, with context)
MAX_WINDOW = 768  # input pixels: the longest side of a window
MAX_SCAN_PIXELS = 6_000_000  # input pixels of the finest level of one frame, at most
CHUNK_PIXELS = 600_000  # input pixels per network call: bounds the activations (about 100 MB); larger calls run slower
MAX_UPSCALE = 2.0  # the finest level samples the frame at most this much enlarged
CONTAINED = 0.6  # a detection with this share of its area in a larger, better face's region is a part of it
PART_REGION = 1.3  # ... the larger face's box grown this many times about its centre
PART_RATIO = 2.0  # ... and at least this many times wider than the part
TILED_THRESHOLD = 0.7  # default score for tiled detection (measurements in docs/models.md)
DEFAULT_MIN_FACE = 24.0  # frame pixels: the default smallest face searched for
_ALIGN = 16  # window sides are multiples of the network's largest stride


@dataclass(frozen=True)
class ScanLevel:
    """One scale of the scan: where its windows sample the frame and which faces it keeps.

    scale: input pixels per frame pixel.
    origins: Tensor[K, 2] float64 (x, y) frame pixels sampled by each window's pixel (0, 0); window
        pixel (i, j) samples frame position ``origin + (j, i) / scale`` (pixel centres at integers).
    size: (height, width) of every window in input pixels, multiples of 16.
    cores: Tensor[K, 4] float64 (x1, y1, x2, y2) frame pixels; a detection whose box centre lies in
        ``[x1, x2) x [y1, y2)`` belongs to window k. The cores of a level tile the plane.
    min_face, max_face: frame pixels; the level keeps boxes whose longer side is in
        ``[min_face, max_face)``.
    """

    scale: float
    origins: Tensor
    size: tuple[int, int]
    cores: Tensor
    min_face: float
    max_face: float


def _axis_windows(length: float, window: int, overlap: int) -> tuple[list[float], list[tuple[float, float]]]:
    """Window starts along one axis of a view ``length`` input pixels long, and their cores.

    Returns:
        (starts, cores): input pixels; windows of ``window`` pixels starting at ``starts`` cover
        ``[0, length)`` with neighbours sharing at least ``overlap`` pixels; the cores split the line
        at the middle of each shared stretch, the outer ones reaching to infinity.
    """
    count = 1 if length <= window else math.ceil((length - overlap) / (window - overlap))
    if count == 1:
        starts = [float(math.floor((length - window) / 2))]  # centred, like a letterbox
    else:
        stride = (length - window) / (count - 1)
        # whole pixels (at scale 1 a window is a plain copy), the last one flush with the end
        starts = [float(math.floor(i * stride)) for i in range(count - 1)] + [length - window]
    cuts = [(a + window + b) / 2 for a, b in zip(starts[:-1], starts[1:])]  # middles of the overlaps
    edges = [-math.inf, *cuts, math.inf]
    return starts, list(zip(edges[:-1], edges[1:]))


def _window_side(length: float) -> int:
    """Window side in input pixels along an axis of a view ``length`` pixels long: as few windows
    of at most :data:`MAX_WINDOW` as will do, each as small as still overlaps enough."""
    if length <= MAX_WINDOW:
        return _ALIGN * math.ceil(length / _ALIGN)
    count = math.ceil((length - OVERLAP) / (MAX_WINDOW - OVERLAP))
    side = (length + (count - 1) * OVERLAP) / count
    return min(MAX_WINDOW, _ALIGN * math.ceil(side / _ALIGN))


def _level(height: int, width: int, scale: float, min_face: float, max_face: float) -> ScanLevel:
    view_h, view_w = height * scale, width * scale
    win_h, win_w = _window_side(view_h), _window_side(view_w)
    ys, y_cores = _axis_windows(view_h, win_h, OVERLAP)
    xs, x_cores = _axis_windows(view_w, win_w, OVERLAP)
    # view pixel p samples frame position p / scale, so a view start s is the frame origin s / scale
    origins = torch.tensor([(x / scale, y / scale) for y in ys for x in xs], dtype=torch.float64)
    cores = torch.tensor(
        [(cx[0] / scale, cy[0] / scale, cx[1] / scale, cy[1] / scale) for cy in y_cores for cx in x_cores],
        dtype=torch.float64,
    )
    return ScanLevel(scale, origins, (win_h, win_w), cores, min_face, max_face)


def plan_scan(height: int, width: int, min_face: float = DEFAULT_MIN_FACE, input_size: int = 128) -> list[ScanLevel]:
    """The levels that find faces from ``min_face`` pixels up to the whole frame.

    Args:
        height, width: frame size in pixels.
        min_face: the smallest face wanted, frame pixels (box side); the finest level keeps any
            smaller face it still finds.
        input_size: the network's own input side (the last level letterboxes the frame to it).

    Returns:
        Levels finest first; the last is the whole-frame letterbox (one window, MediaPipe's).
    """
    long_side = max(height, width)
    letterbox_scale = input_size / long_side
    letterbox_min = SCAN_FACE / letterbox_scale  # frame pixels: the letterbox's smallest face
    scale = min(SCAN_FACE / min_face, MAX_UPSCALE)
    scale = min(scale, math.sqrt(MAX_SCAN_PIXELS / (height * width)))
    levels: list[ScanLevel] = []
    low = SCAN_FACE / scale  # frame pixels: this level's smallest face
    while low < letterbox_min:  # faces the letterbox would not find reliably
        levels.append(_level(height, width, scale, low / SLACK if levels else 0.0, low * LEVEL_RATIO * UPPER_SLACK))
        low *= LEVEL_RATIO
        scale /= LEVEL_RATIO
    side = float(long_side)
    origin = torch.tensor([[(width - side) / 2, (height - side) / 2]], dtype=torch.float64)
    everywhere = torch.tensor([[-math.inf, -math.inf, math.inf, math.inf]], dtype=torch.float64)
    levels.append(
        ScanLevel(letterbox_scale, origin, (input_size, input_size), everywhere,
                  letterbox_min / SLACK if levels else 0.0, math.inf)
    )
    return levels


def sample_windows(frames: Tensor, frame_idx: Tensor, origins: Tensor, scale: float, size: tuple[int, int]) -> Tensor:
    """Network inputs of windows of uint8 frames, each read straight from its frame.

    Window pixel (i, j) is the bilinear value at ``origin + (j, i) / scale`` with black outside the
    frame, rounded half up as MediaPipe's uint8 warp, then mapped to ``x / 127.5 - 1``. For a
    window covering the frame's letterbox square this is :func:`blazeface.letterbox` exactly.

    Args:
        frames: Tensor[B, 3, H, W] uint8 RGB.
        frame_idx: Tensor[K] int64 frame of each window.
        origins: Tensor[K, 2] float64 (x, y) frame position of each window's pixel (0, 0).
        scale: input pixels per frame pixel.
        size: (height, width) of the windows.

    Returns:
        Tensor[K, 3, height, width] float32 in [-1, 1], channels-last memory (the network's).
        Only the frame rows a window reads are touched, and only the pixels it samples are
        converted to float, however large the frame: a window that shrinks the frame reads the
        two source rows of each of its rows, one that enlarges it the band of rows it spans.
    """
    _, channels, height, width = frames.shape
    win_h, win_w = size
    if scale == 1.0 and bool((origins == origins.round()).all()):
        return _copy_windows(frames, frame_idx, origins.long(), size)
    ys, wy = warp_taps(origins[:, 1:2] + _steps(win_h, scale, origins), height)  # [K, h, 2]
    xs, wx = warp_taps(origins[:, 0:1] + _steps(win_w, scale, origins), width)  # [K, w, 2]
    pixels = frames.permute(0, 2, 3, 1)  # [B, H, W, C], a view (contiguous for channels-last frames)
    out = torch.empty(origins.shape[0], win_h, win_w, channels, device=frames.device)
    for k in range(origins.shape[0]):  # a handful of windows per frame
        image = pixels[int(frame_idx[k])]
        top, bottom = int(ys[k].min()), int(ys[k].max()) + 1
        if 2 * win_h < bottom - top:  # shrinking: the two source rows of every window row
            taps = image.index_select(0, ys[k].flatten()).index_select(1, xs[k].flatten())
            taps = taps.float().view(win_h, 2, win_w, 2, channels)
            rows = (taps * wx[k].view(1, 1, win_w, 2, 1)).sum(3)  # [h, 2, w, C]: along x first, as letterbox
        else:  # enlarging: blend the band of rows the window spans along x, then pick its rows
            taps = image[top:bottom].index_select(1, xs[k].flatten()).float().view(bottom - top, win_w, 2, channels)
            band = (taps * wx[k].view(1, win_w, 2, 1)).sum(2)  # [rows, w, C]
            rows = band.index_select(0, (ys[k] - top).flatten()).view(win_h, 2, win_w, channels)
        out[k] = (rows * wy[k].view(win_h, 2, 1, 1)).sum(1)
    return (torch.floor(out + 0.5) / 127.5 - 1.0).permute(0, 3, 1, 2)


def _steps(count: int, scale: float, like: Tensor) -> Tensor:
    """Tensor[count] float64: offsets ``d / scale`` of a window's pixels from its origin, frame pixels."""
    return torch.arange(count, dtype=torch.float64, device=like.device) * (1.0 / scale)


def _copy_windows(frames: Tensor, frame_idx: Tensor, origins: Tensor, size: tuple[int, int]) -> Tensor:
    """:func:`sample_windows` at scale 1 from whole-pixel origins: the frame's pixels as they are."""
    _, channels, height, width = frames.shape
    win_h, win_w = size
    pixels = frames.permute(0, 2, 3, 1)  # [B, H, W, C]
    out = torch.empty((origins.shape[0], win_h, win_w, channels), device=frames.device)
    for k, (x, y) in enumerate(origins.tolist()):
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + win_w, width), min(y + win_h, height)
        if (x1 - x0, y1 - y0) != (win_w, win_h):
            out[k] = -1.0  # black where the window reaches past the frame
        if x1 > x0 and y1 > y0:
            inside = out[k, y0 - y : y1 - y, x0 - x : x1 - x]
            torch.div(pixels[int(frame_idx[k]), y0:y1, x0:x1], 127.5, out=inside).sub_(1.0)  # x / 127.5 - 1
    return out.permute(0, 3, 1, 2)  # channels-last memory


def drop_parts(boxes: Tensor, scores: Tensor, share: float = CONTAINED, grow: float = PART_REGION,
               ratio: float = PART_RATIO) -> Tensor:
    """Which detections to keep: not a part of a larger face found as a face of its own.

    At a fine level an eye and brow of a large face can look like a small face (measured: boxes
    of 24-37 pixels at the corners of 100-128 pixel faces, scores 0.57-0.65, against 0.9 for the
    face). Such a detection is at most ``1 / ratio`` the size of the face, scores lower, and lies
    mostly (``share`` of its area) inside the face's box grown ``grow`` times about its centre.

    Args:
        boxes: Tensor[N, 4] (x1, y1, x2, y2).
        scores: Tensor[N].
        share: a box with at least this share of its own area inside such a region is dropped.
        grow: the larger box is grown this many times about its centre first.
        ratio: the larger box's side is at least this many times the smaller one's.

    Returns:
        Tensor[N] bool, True for the detections kept.
    """
    if boxes.shape[0] < 2:
        return torch.ones(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2
    region = torch.cat([centre - half * grow, centre + half * grow], dim=1)
    lt = torch.maximum(boxes[:, None, :2], region[None, :, :2])
    rb = torch.minimum(boxes[:, None, 2:], region[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)  # [i, j]: box i inside the region of box j
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(-1)
    side = (boxes[:, 2:] - boxes[:, :2]).max(dim=1).values
    inside = inter >= share * area[:, None]
    part = inside & (side[None, :] >= ratio * side[:, None]) & (scores[None, :] > scores[:, None])
    return ~part.any(dim=1)


class TiledDetector:
    """BlazeFace short range over a pyramid of overlapping windows (see the module docstring).

    Args:
        detector: the short-range :class:`BlazeFaceDetector` (its network and weighted NMS).
        min_face: the smallest face searched for, frame pixels.
        threshold: default score a face must reach.
    """

    def __init__(self, detector: BlazeFaceDetector, min_face: float = DEFAULT_MIN_FACE,
                 threshold: float = TILED_THRESHOLD) -> None:
        if detector.model.variant != "short":
            raise ValueError("tiled detection runs the short-range network")
        self.detector = detector
        self.min_face = float(min_face)
        self.threshold = threshold
        self._plans: dict[tuple[int, int], list[ScanLevel]] = {}
        self._anchor_cache: dict[tuple[int, int, str], Tensor] = {}

    def plan(self, height: int, width: int) -> list[ScanLevel]:
        """The scan levels of a frame size (the last few sizes cached: a folder of photos has many)."""
        key = (height, width)
        if key not in self._plans:
            if len(self._plans) >= 32:
                self._plans.clear()
            self._plans[key] = plan_scan(height, width, self.min_face, self.detector.model.input_size)
        return self._plans[key]

    def coarse_min_face(self, height: int, width: int) -> float | None:
        """Frame pixels: the smallest face a coarse scan of frames this size looks for (the second
        level's own smallest face, :data:`SCAN_FACE` input pixels), or None when the scan has a
        single level (nothing to leave out)."""
        levels = self.plan(height, width)
        return SCAN_FACE / levels[1].scale if len(levels) > 1 else None

    @torch.inference_mode()
    def detect(self, frames: Tensor, threshold: float | None = None, coarse: bool = False) -> Detections:
        """Faces in frames Tensor[B, 3, H, W] uint8 RGB, as :meth:`BlazeFaceDetector.detect` returns them.
        ``coarse``: leave out the finest level (faces below :meth:`coarse_min_face` may be missed)."""
        threshold = self.threshold if threshold is None else threshold
        model = self.detector.model
        device = model.anchors.device
        frames = frames.to(device)
        batch, _, height, width = frames.shape
        _, strides, per_cell = VARIANTS[model.variant]
        found: list[list[tuple[Tensor, Tensor, Tensor]]] = [[] for _ in range(batch)]
        levels = self.plan(height, width)
        for level in levels[1:] if coarse and len(levels) > 1 else levels:
            win_h, win_w = level.size
            anchors = self._anchors(win_h, win_w, strides, per_cell, device)
            origins = level.origins.to(device)
            cores = level.cores.to(device)
            windows = origins.shape[0]
            frame_idx = torch.arange(batch, device=device).repeat_interleave(windows)
            window_idx = torch.arange(windows, device=device).repeat(batch)
            per_call = max(1, CHUNK_PIXELS // (win_h * win_w))
            for start in range(0, batch * windows, per_call):
                f = frame_idx[start : start + per_call]
                w = window_idx[start : start + per_call]
                inputs = sample_windows(frames, f, origins[w], level.scale, level.size)
                regressors, logits = model(inputs.contiguous(memory_format=torch.channels_last))
                scores = torch.sigmoid(logits.clamp(-100.0, 100.0))
                hits = scores >= threshold
                for i in hits.any(dim=1).nonzero()[:, 0].tolist():  # only the few windows with a face
                    keep = hits[i]
                    kept = self._window_faces(regressors[i][keep], scores[i][keep], anchors[keep],
                                              origins[w[i]], cores[w[i]], level)
                    if kept is not None:
                        found[int(f[i])].append(kept)
        return self._merge(found, device)

    def _anchors(self, height: int, width: int, strides: tuple[int, ...], per_cell: int,
                 device: torch.device) -> Tensor:
        """Anchor centres Tensor[A, 2] of a window size, in input pixels (cached)."""
        key = (height, width, str(device))
        if key not in self._anchor_cache:
            if len(self._anchor_cache) >= 32:
                self._anchor_cache.clear()
            self._anchor_cache[key] = anchor_pixels(height, width, strides, per_cell).to(device)
        return self._anchor_cache[key]

    def _window_faces(self, regressors: Tensor, scores: Tensor, anchors: Tensor, origin: Tensor,
                      core: Tensor, level: ScanLevel) -> tuple[Tensor, Tensor, Tensor] | None:
        """Decode one window's anchors to frame pixels; keep the faces in its core and size range."""
        step = 1.0 / level.scale
        centre = anchors + regressors[:, 0:2]  # input pixels
        half = regressors[:, 2:4] / 2
        boxes = torch.cat([centre - half, centre + half], -1) * step + origin.float().repeat(2)
        points = (regressors[:, 4:].unflatten(-1, (NUM_KEYPOINTS, 2)) + anchors[:, None]) * step + origin.float()
        boxes, scores, points = weighted_nms(boxes, scores, points, self.detector.iou_threshold)
        middle = (boxes[:, :2] + boxes[:, 2:]) / 2
        side = (boxes[:, 2:] - boxes[:, :2]).max(dim=1).values
        inside = (middle >= core[:2].float()).all(1) & (middle < core[2:].float()).all(1)
        sized = (side >= level.min_face) & (side < level.max_face) & (side > 0)
        keep = inside & sized
        if not bool(keep.any()):
            return None
        return boxes[keep], scores[keep], points[keep]

    def _merge(self, found: list[list[tuple[Tensor, Tensor, Tensor]]], device: torch.device) -> Detections:
        parts = []
        for i, pieces in enumerate(found):
            if not pieces:
                continue
            b, s, p = (torch.cat(t) for t in zip(*pieces))
            b, s, p = weighted_nms(b, s, p, self.detector.iou_threshold)
            keep = drop_parts(b, s)
            b, s, p = b[keep], s[keep], p[keep]
            parts.append((b, s, p, torch.full((len(s),), i, dtype=torch.long, device=device)))
        if not parts:
            return Detections.empty(NUM_KEYPOINTS, device=device)
        b, s, p, f = (torch.cat(t) for t in zip(*parts))
        return Detections(boxes=b.float(), scores=s.float(), landmarks=p.float(), frame=f)

