"""Video decoding with PyAV: upright frames with exact timestamps, resumable, streamed in batches.

- Frames come out as players show them: a display matrix (phone videos) is applied, see
  :mod:`facecli.io.orientation`.
- ``frame`` is the decode index in presentation order (0, 1, 2, ...); ``time_s`` is the frame's own
  presentation timestamp, ``(pts - stream start) * time_base`` in seconds, exact for
  variable-frame-rate files (never index / fps).
- ``start_after=(frame, time_s)`` continues after a frame of an earlier run without converting the
  frames before it (:func:`iter_frames`).
- Every expected failure is an :class:`InputError` whose text is one line naming the file.

Frames are never accumulated: a bounded queue holds at most a few batches, so memory stays
flat however long the video is.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from facecli.io.images import InputError
from facecli.io.orientation import UPRIGHT, Orientation, orientation_from_side_data, to_upright
from facecli.io.prefetch import prefetch
from facecli.types import FrameBatch

log = logging.getLogger(__name__)

# how far before the resume point to seek, in seconds, until the decoder lands at or before it
SEEK_BACKOFF_S = (0.0, 1.0, 10.0)


@dataclass(frozen=True)
class VideoInfo:
    """What a video's first video stream says about itself (probe_video)."""

    width: int  # displayed width in pixels (after the display matrix)
    height: int  # displayed height in pixels
    fps: float  # average frame rate (0.0 when unknown); only a summary for variable-rate files
    frames: int  # frame count from the container (0 when unknown)
    rotation: int = 0  # degrees clockwise players turn the stored picture: 0, 90, 180 or 270
    mirrored: bool = False  # mirrored left-right after the rotation


# --- opening and errors ----------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    """A short one-line reason from an exception (FFmpeg's text without the repeated file name)."""
    text = getattr(exc, "strerror", None) or str(exc)
    text = str(text).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


def _open_error(path: str | Path, exc: BaseException) -> InputError:
    if isinstance(exc, FileNotFoundError):
        return InputError(f"{path}: no such file")
    if isinstance(exc, PermissionError):
        return InputError(f"{path}: permission denied")
    return InputError(f"{path}: not a readable video ({_reason(exc)})")


@contextmanager
def _open_video(path: str | Path, threads: int = 0):
    """Open ``path`` and yield (container, its first video stream).

    Raises:
        InputError: missing, unreadable, empty, a folder, FIFO or device, not a media file, or
            without a video stream.
    """
    import av

    try:
        if os.path.isdir(path):
            raise InputError(f"{path}: is a directory")
        if os.path.exists(path) and not os.path.isfile(path):  # a FIFO or device would block the read
            raise InputError(f"{path}: not a regular file")
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise InputError(f"{path}: empty file (0 bytes)")
        container = av.open(str(path))
    except InputError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise _open_error(path, exc) from None
    try:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            raise InputError(f"{path}: no video stream ({', '.join(kinds) or 'no streams'} only)")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if threads:
            stream.thread_count = threads
        yield container, stream
    finally:
        container.close()


def _frame_orientation(frame) -> Orientation:
    """The display matrix FFmpeg attached to a decoded frame, as an Orientation (upright if none)."""
    side = frame.side_data
    if len(side) == 0:
        return UPRIGHT
    try:
        data = side["DISPLAYMATRIX"]
    except KeyError:
        return UPRIGHT
    return orientation_from_side_data(bytes(data))


def _upright_rgb(frame) -> np.ndarray:
    """ndarray[H, W, 3] uint8 RGB of a decoded frame, turned as players show it."""
    return to_upright(frame.to_ndarray(format="rgb24"), _frame_orientation(frame))


class _Truncated(Exception):
    """The file ends inside a packet of frame data (a cut-off download or copy)."""


def _decode(container, stream) -> Iterator:
    """``container.decode(stream)`` that notices a file cut short.

    Two signs, checked once the frames before the cut are out: the demuxer flagged the last packet
    as corrupt (it could not read it whole; FFmpeg's frame-threaded H.264 decoder then drops it
    silently), or the container's index (MP4/MOV sample tables) places frame data past the end of
    the file (a cut that falls between two packets). Corrupt packets in the middle of a stream
    (damaged broadcasts) are left to the decoder to conceal. Matroska has neither sign: a cut
    Matroska file just ends early.

    Yields:
        av.VideoFrame in presentation order.

    Raises:
        _Truncated: after the last frame, when the file was cut short.
    """
    last_corrupt = False
    for packet in container.demux(stream):
        if packet.size:
            last_corrupt = packet.is_corrupt
        yield from packet.decode()
    if last_corrupt or _indexed_past_end(container, stream):
        raise _Truncated()


def _indexed_past_end(container, stream) -> bool:
    """True when the stream's last index entry lies (partly) beyond the end of the file."""
    entries = stream.index_entries
    if not len(entries):
        return False
    last = entries[len(entries) - 1]
    try:
        size = os.path.getsize(container.name)
    except (OSError, TypeError):
        return False
    return last.pos >= 0 and last.size > 0 and last.pos + last.size > size


def _truncated_error(path: str | Path, index: int) -> InputError:
    where = f"after frame {index}" if index >= 0 else "before the first frame"
    return InputError(f"{path}: the file ends in the middle of the video data {where} (truncated?)")


# --- probing ---------------------------------------------------------------------------------------


def probe_video(path: str | Path) -> VideoInfo:
    """Read the first video stream's header and decode its first frame (for the display matrix).

    Returns:
        VideoInfo with the displayed width/height, rotation and mirroring of the first frame.

    Raises:
        InputError: the file is missing, unreadable, not a media file, has no video stream, or its
            video stream has no decodable frame.
    """
    import av

    with _open_video(path) as (container, stream):
        rate = stream.average_rate or stream.base_rate or 0
        try:
            first = next(_decode(container, stream), None)
        except _Truncated:
            raise _truncated_error(path, -1) from None
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise InputError(f"{path}: video decoding failed before the first frame ({_reason(exc)})") from None
        if first is None:
            raise InputError(f"{path}: the video stream has no frames")
        orientation = _frame_orientation(first)
        width, height = orientation.displayed_size(int(first.width), int(first.height))
        return VideoInfo(width=width, height=height, fps=float(rate), frames=int(stream.frames or 0),
                         rotation=orientation.rotation, mirrored=orientation.mirrored)


def count_frames(path: str | Path) -> int:
    """Number of frames: the container's count when it has one (MP4, MOV, AVI), without decoding;
    otherwise (Matroska, WebM, streams) every frame is decoded, without RGB conversion, and counted.

    Raises:
        InputError: as probe_video, or a decoding failure naming the frame reached.
    """
    import av

    with _open_video(path) as (container, stream):
        if stream.frames:
            return int(stream.frames)
        n = 0
        try:
            for _ in _decode(container, stream):
                n += 1
        except _Truncated:
            raise _truncated_error(path, n - 1) from None
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise InputError(f"{path}: video decoding failed after frame {n - 1} ({_reason(exc)})") from None
        return n


# --- decoding --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Timing:
    """Turns a frame's pts into seconds from the stream start."""

    start: int  # the stream's start_time in time_base units (0 when unknown)
    time_base: Fraction | None
    fps: float  # average rate, for frames without a timestamp (0.0 when unknown)

    @staticmethod
    def of(stream) -> "_Timing":
        return _Timing(int(stream.start_time or 0), stream.time_base, float(stream.average_rate or 0))

    def time_s(self, pts: int | None, index: int) -> float:
        """(pts - start) * time_base in seconds, exact; index / fps for a frame without a timestamp
        (0.0 when the rate is unknown too)."""
        if pts is not None and self.time_base:
            return float((pts - self.start) * self.time_base)
        return index / self.fps if self.fps > 0 else 0.0


def _pts_at(time_s: float, start: int, time_base: Fraction) -> int:
    """The pts whose time is ``time_s`` (the inverse of _Timing.time_s; exact for the times it gives)."""
    return start + round(Fraction(time_s) / time_base)


def _seek_past(container, stream, target: int) -> tuple[Iterator | None, str]:
    """Seek to a keyframe at or before pts ``target`` and decode up to the frame AT ``target``.

    Returns:
        (decoder iterator positioned just after that frame, "") on success; (None, why) when the
        seek never landed at or before the target on a keyframe, the frame at ``target`` is not
        there, or timestamps are missing or not increasing (the caller then decodes from the start).
    """
    import av

    start = stream.start_time or 0
    for back_s in SEEK_BACKOFF_S:
        offset = max(start, target - int(back_s / stream.time_base))
        try:
            container.seek(offset, stream=stream, backward=True)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            return None, f"seeking failed ({_reason(exc)})"
        frames = _decode(container, stream)
        frame = next(frames, None)
        if frame is None:
            return None, "nothing decodes after seeking"
        if not frame.key_frame or frame.pts is None or frame.pts > target:
            if offset == start:
                break
            continue  # landed after the target (B-frames decoded after a later keyframe): further back
        previous = None
        while True:
            if frame.pts is None or (previous is not None and frame.pts <= previous):
                return None, "timestamps are missing or not increasing"
            if frame.pts == target:
                return frames, ""
            if frame.pts > target:
                return None, "no frame has the resume time"
            previous = frame.pts
            frame = next(frames, None)
            if frame is None:
                return None, "the resume time is after the last frame"
    return None, "seeking never landed at or before the resume time"


def _frames(
    path: str | Path, threads: int, start_after: tuple[int, float] | None
) -> Iterator[tuple[int, float, object]]:
    """(decode index, time_s, av.VideoFrame) in presentation order, after ``start_after`` when given.

    Decoding errors propagate as PyAV's exceptions; the caller names the frame reached.
    """
    if start_after is not None:
        after, after_s = start_after
        with _open_video(path, threads) as (container, stream):
            timing = _Timing.of(stream)
            why = "the stream has no time base"
            if stream.time_base:
                frames, why = _seek_past(container, stream, _pts_at(after_s, timing.start, stream.time_base))
                if frames is not None:
                    log.debug("%s: resumed after frame %d (%.6f s) by seeking", path, after, after_s)
                    for k, frame in enumerate(frames, start=after + 1):
                        yield k, timing.time_s(frame.pts, k), frame
                    return
        log.info("%s: resuming after frame %d by decoding from the start (%s)", path, after, why)
    with _open_video(path, threads) as (container, stream):
        timing = _Timing.of(stream)
        for index, frame in enumerate(_decode(container, stream)):
            if start_after is None or index > start_after[0]:
                yield index, timing.time_s(frame.pts, index), frame


def iter_frames(
    path: str | Path,
    skip_frames: int = 1,
    threads: int = 0,
    start_after: tuple[int, float] | None = None,
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Decode (frame index, time in seconds, ndarray[H, W, 3] uint8 RGB upright) for every
    ``skip_frames``-th frame (index % skip_frames == 0).

    Args:
        path: the video file.
        skip_frames: keep every Nth frame.
        threads: decoder threads (0 = FFmpeg's choice).
        start_after: (frame index, time_s) of the last frame an earlier run handled, as this function
            gave them; decoding continues with frame index + 1, and yields exactly what an
            uninterrupted decode would from there. The file is sought (back to a keyframe) near the
            time and decoded forward without RGB conversion up to that frame; when the seek does not
            land at or before it, the time matches no frame, or timestamps are missing or not
            increasing, every frame is decoded from the start and counted instead (the index is then
            what counts).

    Raises:
        InputError: the file cannot be opened (see probe_video), its video stream has no frames, or
            decoding fails (the frames before have been yielded; the message names the last one).
            A file cut short whose container does not notice (e.g. Matroska) simply ends early.
    """
    import av

    if skip_frames < 1:
        raise ValueError(f"skip_frames must be >= 1, got {skip_frames}")
    if start_after is not None and start_after[0] < 0:
        raise ValueError(f"start_after frame must be >= 0, got {start_after[0]}")
    index = start_after[0] if start_after else -1
    try:
        for index, time_s, frame in _frames(path, threads, start_after):
            if index % skip_frames == 0:
                yield index, time_s, _upright_rgb(frame)
    except InputError:
        raise
    except _Truncated:
        raise _truncated_error(path, index) from None
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        where = f"after frame {index}" if index >= 0 else "before the first frame"
        raise InputError(f"{path}: video decoding failed {where} ({_reason(exc)})") from None
    if index < 0:
        raise InputError(f"{path}: the video stream has no frames")


def iter_video_batches(
    path: str | Path,
    batch_size: int,
    skip_frames: int = 1,
    threads: int = 0,
    prefetch_batches: int = 2,
    start_after: tuple[int, float] | None = None,
    max_frames: int | None = None,
    pin_memory: bool = False,
) -> Iterator[FrameBatch]:
    """FrameBatches of a video, decoded ahead in a background thread.

    Args:
        path: the video file.
        batch_size: frames per batch (a batch also ends where the frame size changes).
        skip_frames: keep every Nth frame.
        threads: decoder threads (0 = FFmpeg's choice).
        prefetch_batches: batches decoded ahead (bounds memory).
        start_after: (frame index, time_s) to continue after, see iter_frames.
        max_frames: stop after this many frames (None: the whole video).
        pin_memory: put each batch in page-locked memory (in the decode thread), for fast
            asynchronous copies to a CUDA device.

    Returns:
        Iterator of FrameBatch: images Tensor[B, 3, H, W] uint8 RGB upright, index and time_s as
        iter_frames gives them.

    Raises:
        InputError: as iter_frames (the batches before the failure have been yielded).
    """
    return prefetch(_batches(path, batch_size, skip_frames, threads, start_after, max_frames, pin_memory),
                    prefetch_batches, "facecli-decode", stage_name="decode")


def _batches(
    path: str | Path, batch_size: int, skip_frames: int, threads: int, start_after: tuple[int, float] | None,
    max_frames: int | None = None,
    pin_memory: bool = False,
) -> Iterator[FrameBatch]:
    idx: list[int] = []
    times: list[float] = []
    arrays: list[np.ndarray] = []
    frames = iter_frames(path, skip_frames, threads, start_after)
    if max_frames is not None:
        frames = itertools.islice(frames, max(0, max_frames))
    for i, t, arr in frames:
        if arrays and arr.shape != arrays[0].shape:  # frame size changed mid-stream: flush
            yield _batch(arrays, idx, times, path, pin_memory)
            idx, times, arrays = [], [], []
        idx.append(i)
        times.append(t)
        arrays.append(arr)
        if len(arrays) == batch_size:
            yield _batch(arrays, idx, times, path, pin_memory)
            idx, times, arrays = [], [], []
    if arrays:
        yield _batch(arrays, idx, times, path, pin_memory)


def _batch(
    arrays: list[np.ndarray], idx: list[int], times: list[float], path: str | Path, pin_memory: bool = False
) -> FrameBatch:
    if pin_memory:  # stacked straight into page-locked memory: one copy, as without pinning
        stacked = torch.empty((len(arrays), *arrays[0].shape), dtype=torch.uint8, pin_memory=True)
        torch.stack([torch.from_numpy(a) for a in arrays], out=stacked)
        images = stacked.permute(0, 3, 1, 2)
    else:
        images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return FrameBatch(images=images, index=tuple(idx), time_s=tuple(times), sources=(str(path),) * len(idx))
