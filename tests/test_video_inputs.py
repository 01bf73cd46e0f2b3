"""Video decoding on generated files: display matrices, variable frame rate, resuming mid-video,
frame counts, and bad inputs that must give one-line InputErrors."""

from __future__ import annotations

import logging
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import facecli.io.video as video
from facecli.io.images import InputError
from facecli.io.orientation import Orientation, orientation_from_matrix, to_upright
from facecli.io.video import count_frames, iter_frames, iter_video_batches, probe_video
from tests.support.forking import fork_quietly

X264_GOP12 = {"x264-params": "keyint=12:min-keyint=12:scenecut=0:bframes=3"}


def _pattern(i: int, size: tuple[int, int] = (64, 80)) -> np.ndarray:
    """A frame that changes every step (moving bars plus fixed noise), so decoded frames differ."""
    h, w = size
    arr = np.random.default_rng(i % 7).integers(0, 30, (h, w, 3), dtype=np.uint8)
    arr[:, (i * 3) % w:(i * 3) % w + 10] += 180
    arr[(i * 2) % h:(i * 2) % h + 8, :, 1] += 90
    return arr


def encode(path: Path, n: int = 30, codec: str = "libx264", fps: int = 25, options: dict | None = None,
           size: tuple[int, int] = (64, 80), rotation: int | None = None, hflip: bool = False,
           pts_ms: list[int] | None = None, gop: int = 12, container_options: dict | None = None) -> Path:
    """Write a test video with PyAV: ``n`` pattern frames, or one per ``pts_ms`` entry at those
    millisecond timestamps (time base 1/1000); ``rotation`` (degrees counter-clockwise, PyAV's
    convention) and ``hflip`` go into the container's display matrix."""
    with av.open(str(path), "w", options=container_options or {}) as c:
        s = c.add_stream(codec, rate=fps, options=options or {})
        s.height, s.width = size
        s.pix_fmt = "yuv420p"
        s.codec_context.gop_size = gop
        if pts_ms is not None:
            s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None or hflip:
            s.set_display_rotation(rotation or 0, hflip=hflip)
        for i, t in enumerate(pts_ms if pts_ms is not None else range(n)):
            frame = av.VideoFrame.from_ndarray(_pattern(i, size), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = t, Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def stored_frames(path: Path) -> list[np.ndarray]:
    """Frames as stored (PyAV without any orientation handling)."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(InputError) as err:
        result = call(*args, **kwargs)
        if not isinstance(result, (int, video.VideoInfo)):
            list(result)
    message = str(err.value)
    assert "\n" not in message and (err.value.__context__ is None or err.value.__suppress_context__)
    return message


# --- orientation -----------------------------------------------------------------------------------


def _apply_matrix_by_loop(image: np.ndarray, m: list[int]) -> np.ndarray:
    """Place every stored pixel (p, q) at p' = a*p + c*q, q' = b*p + d*q, shifted to start at 0."""
    a, b, c, d = (v // 65536 for v in (m[0], m[1], m[3], m[4]))
    h, w = image.shape[:2]
    coords = {(p, q): (a * p + c * q, b * p + d * q) for q in range(h) for p in range(w)}
    min_p = min(x for x, _ in coords.values())
    min_q = min(y for _, y in coords.values())
    out_w, out_h = (h, w) if a == 0 else (w, h)
    out = np.zeros((out_h, out_w, image.shape[2]), image.dtype)
    for (p, q), (x, y) in coords.items():
        out[y - min_q, x - min_p] = image[q, p]
    return out


@pytest.mark.parametrize("m", [
    [65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30], [0, -65536, 0, 65536, 0, 0, 0, 0, 1 << 30],
    [-65536, 0, 0, 0, -65536, 0, 0, 0, 1 << 30], [0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30],
    [-65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30], [65536, 0, 0, 0, -65536, 0, 0, 0, 1 << 30],
    [0, 65536, 0, 65536, 0, 0, 0, 0, 1 << 30], [0, -65536, 0, -65536, 0, 0, 0, 0, 1 << 30],
])
def test_every_right_angle_display_matrix_matches_a_pixel_loop(m):
    image = np.arange(3 * 4 * 2, dtype=np.int32).reshape(3, 4, 2)
    orientation = orientation_from_matrix(m)
    assert np.array_equal(to_upright(image, orientation), _apply_matrix_by_loop(image, m)), orientation


def test_matrix_examples_and_non_right_angles():
    # an iPhone portrait clip: tkhd matrix (0, 1, -1, 0), shown turned 90 degrees clockwise
    assert orientation_from_matrix([0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30]) == Orientation(90, False)
    assert orientation_from_matrix([46341, 46341, 0, -46341, 46341, 0, 0, 0, 1 << 30]) == Orientation()  # 45
    assert orientation_from_matrix([0] * 9) == Orientation()


@pytest.mark.parametrize("degrees,hflip", [(90, False), (-90, False), (180, False), (90, True), (0, True)])
def test_rotated_video_frames_come_out_as_players_show_them(tmp_path, degrees, hflip):
    path = encode(tmp_path / "phone.mp4", n=4, size=(32, 48), rotation=degrees, hflip=hflip)
    with av.open(str(path)) as c:  # the file really carries a display matrix
        assert next(c.decode(video=0)).rotation == (degrees + 180) % 360 - 180 or degrees == 0
    stored = stored_frames(path)
    expected = [np.rot90(s, k=degrees // 90) for s in stored]  # PyAV's degrees are counter-clockwise
    if hflip:
        expected = [e[:, ::-1] for e in expected]
    got = list(iter_frames(path))
    assert len(got) == 4 and all(np.array_equal(g, e) for (_, _, g), e in zip(got, expected))
    info = probe_video(path)
    assert (info.rotation, info.mirrored) == ((-degrees) % 360, hflip)
    assert (info.height, info.width) == expected[0].shape[:2]
    batch = next(iter(iter_video_batches(path, batch_size=4)))
    assert tuple(batch.images.shape) == (4, 3, *expected[0].shape[:2])
    assert np.array_equal(batch.images[1].permute(1, 2, 0).numpy(), expected[1])


# --- timestamps ------------------------------------------------------------------------------------

IRREGULAR_MS = [250, 283, 300, 370, 371, 550, 551, 552, 750, 1250, 1257, 1750]


@pytest.mark.parametrize("suffix", ["mp4", "mkv"])
def test_variable_frame_rate_times_are_the_frames_own_timestamps(tmp_path, suffix):
    path = encode(tmp_path / f"vfr.{suffix}", pts_ms=IRREGULAR_MS, options={"x264-params": "bframes=2:keyint=4"})
    got = list(iter_frames(path))
    assert [i for i, _, _ in got] == list(range(len(IRREGULAR_MS)))
    assert [t for _, t, _ in got] == [(ms - IRREGULAR_MS[0]) / 1000 for ms in IRREGULAR_MS]  # exact
    assert count_frames(path) == len(IRREGULAR_MS)
    tail = list(iter_frames(path, start_after=got[4][:2]))  # resume inside the irregular part
    assert [(i, t) for i, t, _ in tail] == [(i, t) for i, t, _ in got[5:]]
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(tail, got[5:]))


# --- resuming --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gop_clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gop")
    return {
        "h264": encode(root / "h264 gop12 bframes.mp4", n=48, options=X264_GOP12),
        "mpeg4": encode(root / "mpeg4 gop12 bframes.mp4", n=48, codec="mpeg4", options={"bf": "2"}),
    }


def _same(got, expected) -> bool:
    return len(got) == len(expected) and all(
        a[0] == b[0] and a[1] == b[1] and np.array_equal(a[2], b[2]) for a, b in zip(got, expected))


@pytest.mark.parametrize("codec", ["h264", "mpeg4"])
def test_resume_gives_exactly_the_uninterrupted_frames(gop_clips, codec, monkeypatch, caplog):
    path = gop_clips[codec]
    with av.open(str(path)) as c:
        keys = [i for i, f in enumerate(c.decode(video=0)) if f.key_frame]
    assert keys[:4] == [0, 12, 24, 36], keys  # the clip has the GOPs the test is about
    full = list(iter_frames(path))
    converted = []
    real = video._upright_rgb
    monkeypatch.setattr(video, "_upright_rgb", lambda frame: converted.append(frame.pts) or real(frame))
    caplog.set_level(logging.DEBUG, logger="facecli.io.video")
    for k in (0, 1, 11, 12, 13, 23, 30, 46, 47):  # first frame, around keyframes, last two
        converted.clear()
        caplog.clear()
        got = list(iter_frames(path, start_after=full[k][:2]))
        assert _same(got, full[k + 1:]), f"resume after frame {k}"
        assert len(converted) == len(full) - k - 1  # no RGB for the frames before the resume point
        assert "by seeking" in caplog.text and "from the start" not in caplog.text, caplog.text
    # every third frame, batched: the same tail as an uninterrupted run
    whole = [i for b in iter_video_batches(path, 4, skip_frames=3) for i in b.index]
    tail = [i for b in iter_video_batches(path, 4, skip_frames=3, start_after=full[20][:2]) for i in b.index]
    assert whole == list(range(0, 48, 3)) and tail == [i for i in whole if i > 20] and tail[0] == 21


def test_resume_falls_back_to_counting_when_the_time_matches_no_frame(gop_clips, caplog):
    path = gop_clips["h264"]
    full = list(iter_frames(path))
    between = (full[20][1] + full[21][1]) / 2
    with caplog.at_level(logging.INFO, logger="facecli.io.video"):
        got = list(iter_frames(path, start_after=(20, between)))
    assert "from the start (no frame has the resume time)" in caplog.text
    assert _same(got, full[21:])


def test_resume_past_the_end_yields_nothing(gop_clips):
    full = list(iter_frames(gop_clips["mpeg4"]))
    assert list(iter_frames(gop_clips["mpeg4"], start_after=(len(full) + 5, full[-1][1] + 1.0))) == []


def test_count_frames_reads_the_container_without_decoding(tmp_path):
    whole = encode(tmp_path / "whole.mp4", n=30, container_options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])  # header intact, frame data missing
    assert count_frames(whole) == count_frames(cut) == 30  # decoding the cut file would fail
    assert count_frames(encode(tmp_path / "clip.mkv", n=17)) == 17  # no count in Matroska: decoded


# --- bad inputs ------------------------------------------------------------------------------------


def test_empty_text_missing_folder_and_fifo_inputs(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 20)
    for call in (probe_video, iter_frames, count_frames):
        assert one_line_error(call, tmp_path / "empty.mp4") == f"{tmp_path / 'empty.mp4'}: empty file (0 bytes)"
        msg = one_line_error(call, tmp_path / "notes.mp4")
        assert msg.startswith(f"{tmp_path / 'notes.mp4'}: not a readable video (") and "Invalid data" in msg
    assert one_line_error(probe_video, tmp_path / "gone.mp4") == f"{tmp_path / 'gone.mp4'}: no such file"
    assert one_line_error(iter_frames, tmp_path) == f"{tmp_path}: is a directory"
    os.mkfifo(tmp_path / "pipe.mp4")  # opening it for reading would wait for a writer forever
    assert one_line_error(probe_video, tmp_path / "pipe.mp4") == f"{tmp_path / 'pipe.mp4'}: not a regular file"


def _frames_by_time(frames) -> dict[float, np.ndarray]:
    return {t: arr for _, t, arr in frames}


def _assert_a_correct_prefix(got, whole_frames, n_whole):
    """What a cut file gives: fewer frames, in time order, each exactly the complete file's frame at
    that time. (Near the cut, frames whose data is missing are lost, so the last few decode indices
    of a cut file can run ahead of the complete file's; the times stay exact.)"""
    times = [t for _, t, _ in got]
    assert 0 < len(got) < n_whole and times == sorted(set(times))
    full = _frames_by_time(whole_frames)
    assert all(np.array_equal(arr, full[t]) for _, t, arr in got)
    assert [i for i, _, _ in got] == list(range(len(got)))


def _packet_spans(path: Path) -> list[tuple[int, int]]:
    """(byte offset, size) of every video packet in the file."""
    with av.open(str(path)) as c:
        return [(p.pos, p.size) for p in c.demux(video=0) if p.size]


@pytest.mark.parametrize("where", ["inside a packet", "between packets"])
def test_truncated_mp4_gives_its_frames_then_names_the_frame_reached(tmp_path, where):
    whole = encode(tmp_path / "whole.mp4", n=30, options=X264_GOP12, container_options={"movflags": "faststart"})
    pos, size = _packet_spans(whole)[15]
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: pos + size // 2 if where == "inside a packet" else pos])
    got = []
    with pytest.raises(InputError) as err:
        for item in iter_frames(cut):
            got.append(item)
    _assert_a_correct_prefix(got, list(iter_frames(whole)), 30)
    # a single-threaded decoder fails on a cut packet itself; frame-threaded ones drop it silently
    # and the demuxer's corrupt flag or the sample table tells
    assert str(err.value) in (
        f"{cut}: the file ends in the middle of the video data after frame {got[-1][0]} (truncated?)",
        f"{cut}: video decoding failed after frame {got[-1][0]} (Invalid data found when processing input)")
    # moov atom at the end (PyAV's default): nothing is readable
    end = encode(tmp_path / "end.mp4", n=30)
    (tmp_path / "end-cut.mp4").write_bytes(end.read_bytes()[: end.stat().st_size // 2])
    assert "not a readable video" in one_line_error(probe_video, tmp_path / "end-cut.mp4")


def test_truncated_matroska_just_ends_early(tmp_path):
    """Matroska's demuxer drops a partial block without a word: the frames before it, then the end."""
    whole = encode(tmp_path / "whole.mkv", n=30)
    pos, size = _packet_spans(whole)[15]
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: pos + size // 2])
    _assert_a_correct_prefix(list(iter_frames(cut)), list(iter_frames(whole)), 30)


def test_audio_only_file(tmp_path):
    path = tmp_path / "voice.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    for call in (probe_video, iter_frames, count_frames):
        assert one_line_error(call, path) == f"{path}: no video stream (audio only)"


def test_video_stream_without_frames(tmp_path):
    path = tmp_path / "blank.avi"  # AVI keeps an empty stream; MP4 and Matroska drop it
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.height, s.width = 32, 48
        c.start_encoding()
    with av.open(str(path)) as c:
        assert len(c.streams.video) == 1
    for call in (probe_video, iter_frames):
        assert one_line_error(call, path) == f"{path}: the video stream has no frames"


def test_permission_denied(tmp_path):
    """As root, read in a forked child that has become 'nobody' (root reads anything)."""
    folder = Path(tempfile.mkdtemp(prefix="facecli-perm-"))  # world-traversable, unlike pytest's tmp
    try:
        folder.chmod(0o755)
        path = encode(folder / "private clip.mp4", n=3)
        path.chmod(0o600)
        if os.geteuid() != 0:
            path.chmod(0o000)
            messages = [one_line_error(call, path) for call in (probe_video, iter_frames)]
        else:
            messages = _as_nobody(path)
        assert messages == [f"{path}: permission denied"] * 2
    finally:
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()


def _as_nobody(path: Path) -> list[str]:
    read_end, write_end = os.pipe()
    pid = fork_quietly()
    if pid == 0:  # child: drop root, try to read, report, never return into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            out = []
            for call in (probe_video, iter_frames):
                try:
                    result = call(path)
                    list(result) if not isinstance(result, video.VideoInfo) else None
                    out.append("no error")
                except InputError as exc:
                    out.append(str(exc))
            os.write(write_end, "\0".join(out).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        data = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, "the child could not run"
    return data.split("\0")


def test_paths_with_spaces_and_non_ascii_characters(tmp_path):
    folder = tmp_path / "données vidéo 映像"
    folder.mkdir()
    path = encode(folder / "clip ü 片 1.mp4", n=5)
    assert probe_video(path).frames == 5 and len(list(iter_frames(path))) == 5
    assert [i for b in iter_video_batches(str(path), 2) for i in b.index] == [0, 1, 2, 3, 4]
    bad = folder / "ç a s é.mp4"
    bad.write_text("nope")
    assert one_line_error(probe_video, bad).startswith(f"{bad}: not a readable video")
