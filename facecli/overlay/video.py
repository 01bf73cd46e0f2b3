"""Overlay videos: a finished facecli table drawn onto a fresh decode of its input.

The input is demuxed once: video frames are decoded, drawn when the table has faces for them
and encoded; frames without rows (``--skip-frames``) or without faces are passed to the encoder
as decoded. Every output frame keeps its input timestamp (same time base), so frame count and
timing match the input. Audio packets are copied when the output container accepts the codec,
re-encoded (AAC) otherwise. Table rows and frames are streamed: memory does not depend on the
video's length. The output appears only when complete (temporary name, then rename).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from facecli.overlay.draw import OverlayStyle, draw_faces
from facecli.overlay.paths import atomic_path
from facecli.overlay.rows import FrameRows, OverlayError, read_frames

VIDEO_CODECS = ("libx264", "mpeg4")  # first one this PyAV build and the container accept
# FFmpeg's default channel layout for a channel count (av_channel_layout_default)
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "4.0", 5: "5.0(side)", 6: "5.1(side)", 7: "6.1", 8: "7.1"}


@dataclass(frozen=True)
class OverlaySummary:
    """What one overlay video holds."""

    output: Path
    frames: int  # frames written, = frames decoded from the input
    drawn: int  # frames with at least one face drawn
    faces: int  # faces drawn, over all frames
    video_codec: str  # encoder used ("libx264" or "mpeg4")
    audio: str  # "none", "copied", or the encoder it was re-encoded with ("aac")


def render_overlay_video(
    table: str | Path,
    src_video: str | Path,
    dst: str | Path,
    *,
    mesh: bool = False,
    input_name: str | None = None,
    rotation: int | str = 0,
    style: OverlayStyle | None = None,
    codec: str | None = None,
    crf: int = 18,
) -> OverlaySummary:
    """Write ``dst``: ``src_video`` with the faces of ``table`` drawn on it.

    Args:
        table: a finished facecli output (Parquet or CSV) holding this video's rows (it may hold others').
        src_video: the video the table was measured on.
        dst: the overlay to write (format from its extension, e.g. ``.mp4``); its folder must exist.
        mesh: draw the 478-point mesh instead of the 68 landmarks (when the table has mesh columns).
        input_name: the ``input`` value of this video's rows; default ``str(src_video)``.
        rotation: degrees (a multiple of 90) to turn each decoded picture counter-clockwise to show it
            upright, as PyAV's ``VideoFrame.rotation`` gives it; ``"auto"`` reads that from the first
            frame. The table's coordinates must be in the turned (displayed) frame, and the overlay is
            written upright with no display matrix. 0: drawn as decoded, and the input's display
            matrix (if any) is kept so the overlay shows the way the input does.
        style: drawing sizes (default: scaled to the frame).
        codec: force a video encoder (default: libx264 when available, else mpeg4).
        crf: libx264 quality (lower is better; 18 is visually close to the input).

    Returns:
        What was written.

    Raises:
        OverlayError: one line naming the table, the video or ``dst`` and the reason; ``dst`` is then
            not written and no temporary file is left.
    """
    if rotation != "auto" and (isinstance(rotation, bool) or not isinstance(rotation, int)):
        raise ValueError(f"rotation must be degrees (int) or 'auto', not {rotation!r}")
    table, src, dst = Path(table), Path(src_video), Path(dst)
    name = str(src_video) if input_name is None else input_name
    if not dst.parent.is_dir():
        raise OverlayError(f"{dst}: output folder does not exist")
    rows = read_frames(table, name, mesh)
    first = next(rows, None)
    if first is None:
        raise OverlayError(f"{table}: no rows for input {name}")
    try:
        with atomic_path(dst) as part:
            job = _Render(table, src, part, dst, first, rows, rotation, style, codec, crf)
            job.run()
    except OSError as exc:
        raise OverlayError(f"{dst}: cannot write ({_reason(exc)})") from None
    return OverlaySummary(dst, job.index + 1, job.drawn, job.faces, job.video_codec, job.audio)


class _Render:
    """One pass over the input: demux, decode, draw, encode, mux."""

    def __init__(self, table, src, part, dst, first, rows, rotation, style, codec, crf) -> None:
        self.table, self.src, self.part, self.dst = table, src, part, dst
        self.next_rows: FrameRows | None = first
        self.rows: Iterator[FrameRows] = rows
        self.rotation, self.style, self.codec, self.crf = rotation, style, codec, crf
        self.index = -1  # decode index of the last frame
        self.drawn = self.faces = 0
        self.video_codec, self.audio = "", "none"
        self.out = self.vout = self.aout = None
        self.copy_audio = False
        self.turns = 0
        self.last_pts: int | None = None

    def run(self) -> None:
        import av

        try:
            inp = av.open(str(self.src))
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise OverlayError(f"{self.src}: not a readable video ({_reason(exc)})") from None
        try:
            with inp:
                if not inp.streams.video:
                    raise OverlayError(f"{self.src}: no video stream")
                vin = inp.streams.video[0]
                vin.thread_type = "AUTO"
                ain = inp.streams.audio[0] if inp.streams.audio else None
                waiting: list = []  # audio packets demuxed before the first video frame
                for packet in self._demux(inp, vin, ain):
                    if packet.stream.type == "audio":
                        if self.out is None:
                            waiting.append(packet)
                        else:
                            self._audio(packet)
                        continue
                    for frame in self._decode(packet):
                        if self.out is None:
                            self._open_output(vin, ain, frame)
                            for early in waiting:
                                self._audio(early)
                            waiting.clear()
                        self._video(frame)
                if self.out is None:
                    raise OverlayError(f"{self.src}: no video frames")
                if self.next_rows is not None:
                    raise OverlayError(
                        f"{self.table}: rows for frame {self.next_rows.frame} of {self.next_rows.input}, "
                        f"but {self.src} has {self.index + 1} frames"
                    )
                self._finish()
        except av.error.FFmpegError as exc:  # encoder or muxer
            raise OverlayError(f"{self.dst}: encoding failed ({_reason(exc)})") from None
        finally:
            if self.out is not None:
                self.out.close()

    # -- input --------------------------------------------------------------------------------

    def _demux(self, inp, vin, ain) -> Iterator:
        import av

        streams = [vin] + ([ain] if ain is not None else [])
        packets = inp.demux(*streams)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError as exc:
                raise OverlayError(f"{self.src}: video decoding failed {self._where()} ({_reason(exc)})") from None
            yield packet

    def _decode(self, packet) -> list:
        import av

        try:
            return packet.decode()
        except av.error.FFmpegError as exc:
            raise OverlayError(f"{self.src}: video decoding failed {self._where()} ({_reason(exc)})") from None

    def _where(self) -> str:
        return f"after frame {self.index}" if self.index >= 0 else "before the first frame"

    # -- output -------------------------------------------------------------------------------

    def _open_output(self, vin, ain, frame) -> None:
        """Create the output streams once the first frame tells the picture size and rotation."""
        import av

        degrees = frame.rotation if self.rotation == "auto" else int(self.rotation)
        if degrees % 90:
            raise OverlayError(f"{self.src}: rotation {degrees} is not a multiple of 90 degrees")
        self.turns = (degrees // 90) % 4
        width, height = (frame.height, frame.width) if self.turns % 2 else (frame.width, frame.height)
        self.size = (height, width)
        attempts = [True, False] if ain is not None else [False]
        for copy in attempts:  # copy the audio if the container takes it, else re-encode
            out = av.open(str(self.part), "w")
            try:
                self.vout, self.video_codec = _video_stream(out, vin, width, height, self.codec, self.crf)
                if self.turns == 0 and frame.rotation:  # drawn as decoded: shown turned, as the input is
                    self.vout.set_display_rotation(frame.rotation)
                self.aout, self.audio = (None, "none") if ain is None else _audio_stream(out, ain, copy)
                out.start_encoding()
            except (ValueError, av.error.FFmpegError) as exc:
                _close_quietly(out)
                if copy:
                    continue
                raise OverlayError(f"{self.dst}: cannot encode ({_reason(exc)})") from None
            self.out, self.copy_audio = out, self.audio == "copied"
            return

    def _audio(self, packet) -> None:
        if self.copy_audio:
            if packet.dts is None:  # the demuxer's flush packet
                return
            packet.stream = self.aout
            self.out.mux(packet)
            return
        for frame in self._decode(packet):
            self.out.mux(self.aout.encode(frame))

    def _video(self, frame) -> None:
        from av.video.frame import PictureType

        self.index += 1
        rows = self.next_rows
        faces = None
        if rows is not None and rows.frame == self.index:
            if (rows.height, rows.width) != self.size:
                raise OverlayError(
                    f"{self.table}: frames of {rows.input} are {rows.width}x{rows.height} there, "
                    f"{self.src} decodes to {self.size[1]}x{self.size[0]} (rotation {self.turns * 90})"
                )
            faces = rows.faces if len(rows.faces) else None
            self.next_rows = next(self.rows, None)
        pts = self._pts(frame)
        if faces is None and self.turns == 0:
            frame.pict_type = PictureType.NONE  # the encoder chooses frame types, not the input's
            out = frame
        else:
            out = self._redraw(frame, faces)
        out.pts, out.time_base = pts, frame.time_base
        self.out.mux(self.vout.encode(out))

    def _pts(self, frame) -> int | None:
        pts = frame.pts
        if pts is None or (self.last_pts is not None and pts <= self.last_pts):
            step = 1 if frame.time_base is None else max(1, round(1 / (self._rate * frame.time_base)))
            pts = 0 if self.last_pts is None else self.last_pts + step
        self.last_pts = pts
        return pts

    @property
    def _rate(self) -> Fraction:
        return Fraction(self.vout.codec_context.framerate or 25)

    def _redraw(self, frame, faces):
        import av

        rgb = frame.to_ndarray(format="rgb24", src_color_range=frame.color_range)
        if self.turns:
            rgb = np.rot90(rgb, self.turns)
        if faces is not None:
            rgb = draw_faces(np.ascontiguousarray(rgb), faces, self.style)
            self.drawn += 1
            self.faces += len(faces)
        new = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        # back to the encoder's format with the source's colour matrix, as the undrawn frames have it
        return new.reformat(
            format=self.vout.codec_context.pix_fmt, dst_colorspace=frame.colorspace, dst_color_range=frame.color_range
        )

    def _finish(self) -> None:
        self.out.mux(self.vout.encode(None))
        if self.aout is not None and not self.copy_audio:
            self.out.mux(self.aout.encode(None))


def _video_stream(out, vin, width: int, height: int, codec: str | None, crf: int):
    """The output video stream: first usable encoder, input time base, source colour tags."""
    import av

    rate = vin.average_rate or vin.guessed_rate or vin.base_rate or Fraction(25)
    errors = []
    for name in (codec,) if codec else VIDEO_CODECS:
        try:
            stream = out.add_stream(name, rate=rate)
        except (ValueError, av.error.FFmpegError, av.codec.codec.UnknownCodecError) as exc:
            errors.append(f"{name}: {_reason(exc)}")
            continue
        stream.width, stream.height = width, height
        odd = width % 2 or height % 2
        stream.pix_fmt = "yuv444p" if odd and name == "libx264" else "yuv420p"
        time_base = vin.time_base or Fraction(1, 90000)
        if name == "mpeg4" and time_base.denominator > 65535:  # MPEG-4 part 2 limit
            time_base = Fraction(1, 65535)
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        ctx, src = stream.codec_context, vin.codec_context
        for attr in ("colorspace", "color_range", "color_primaries", "color_trc"):
            try:
                setattr(ctx, attr, getattr(src, attr))
            except (AttributeError, ValueError, TypeError):
                pass
        if name == "libx264":
            stream.options = {"crf": str(crf), "preset": "veryfast"}
        else:
            ctx.qscale = 3  # constant quality, near-transparent for MPEG-4 part 2
        return stream, name
    raise OverlayError(f"{out.name}: no usable video encoder ({'; '.join(errors)})")


def _audio_stream(out, ain, copy: bool):
    """The output audio stream: a copy of the input's when ``copy``, else AAC (or the container's default)."""
    import av

    if copy:
        return out.add_stream_from_template(ain), "copied"
    for name in ("aac", out.default_audio_codec):
        try:
            stream = out.add_stream(name, rate=ain.codec_context.sample_rate)
        except (ValueError, av.error.FFmpegError, av.codec.codec.UnknownCodecError):
            continue
        layout = ain.codec_context.layout
        if layout.name.endswith("channels"):  # no channel order (e.g. PCM in AVI): encoders want one
            layout = _DEFAULT_LAYOUTS.get(layout.nb_channels, layout)
        stream.layout = layout
        return stream, name
    raise ValueError(f"no audio encoder for {out.format.name}")


def _close_quietly(container) -> None:
    try:
        container.close()
    except Exception:  # a container whose header failed may fail to close too; it is discarded anyway
        pass


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__
