"""Video decoding with PyAV, streamed in batches from a background thread.

Frames are never accumulated: a bounded queue holds at most a few batches, so memory stays
flat however long the video is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facecli.io.images import InputError
from facecli.io.prefetch import prefetch
from facecli.types import FrameBatch


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about the first video stream."""

    width: int
    height: int
    fps: float  # average frame rate (0.0 when unknown)
    frames: int  # frame count from the container (0 when unknown)


def probe_video(path: str | Path) -> VideoInfo:
    """Open the file and read its first video stream's header.

    Raises:
        InputError: the file is missing, not a media file, or has no video stream.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.base_rate or 0
            return VideoInfo(
                width=int(stream.codec_context.width),
                height=int(stream.codec_context.height),
                fps=float(rate),
                frames=int(stream.frames or 0),
            )
    except InputError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable video ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


def iter_frames(path: str | Path, skip_frames: int = 1, threads: int = 0) -> Iterator[tuple[int, float, np.ndarray]]:
    """Decode (frame number, time in seconds, HxWx3 uint8 RGB) for every ``skip_frames``-th frame.

    Raises:
        InputError: on a decoding failure, naming the file and the frame reached.
    """
    import av

    index = -1
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if threads:
                stream.thread_count = threads
            base = stream.start_time or 0
            for frame in container.decode(stream):
                index += 1
                if index % skip_frames:
                    continue
                pts = frame.pts if frame.pts is not None else base
                t = float((pts - base) * frame.time_base) if frame.time_base else 0.0
                yield index, t, frame.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        where = f"after frame {index}" if index >= 0 else "before the first frame"
        raise InputError(f"{path}: video decoding failed {where} ({_reason(exc)})") from None


def iter_video_batches(
    path: str | Path, batch_size: int, skip_frames: int = 1, threads: int = 0, prefetch_batches: int = 2
) -> Iterator[FrameBatch]:
    """FrameBatches of a video, decoded ahead in a background thread.

    Args:
        path: the video file.
        batch_size: frames per batch.
        skip_frames: keep every Nth frame.
        threads: decoder threads (0 = FFmpeg's choice).
        prefetch_batches: batches decoded ahead (bounds memory).

    Raises:
        InputError: a decoding failure (the batches before it have been yielded).
    """
    return prefetch(_batches(path, batch_size, skip_frames, threads), prefetch_batches, "facecli-decode")


def _batches(path: str | Path, batch_size: int, skip_frames: int, threads: int) -> Iterator[FrameBatch]:
    idx: list[int] = []
    times: list[float] = []
    arrays: list[np.ndarray] = []
    for i, t, arr in iter_frames(path, skip_frames, threads):
        if arrays and arr.shape != arrays[0].shape:  # frame size changed mid-stream: flush
            yield _batch(arrays, idx, times, path)
            idx, times, arrays = [], [], []
        idx.append(i)
        times.append(t)
        arrays.append(arr)
        if len(arrays) == batch_size:
            yield _batch(arrays, idx, times, path)
            idx, times, arrays = [], [], []
    if arrays:
        yield _batch(arrays, idx, times, path)


def _batch(arrays: list[np.ndarray], idx: list[int], times: list[float], path: str | Path) -> FrameBatch:
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return FrameBatch(images=images, index=tuple(idx), time_s=tuple(times), sources=(str(path),) * len(idx))
