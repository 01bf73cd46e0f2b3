"""Overlay videos and images, checked by decoding them back against the decoded input.

Tables come from real facecli runs on generated clips with a real face (the lite set, and feat-v2
with random weights for AUs and gaze). "Changed" pixels are those more than 40 levels away from
the decoded input in some channel, far above re-encoding noise.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from facecli.cli import app
from facecli.overlay import (
    OverlayError,
    common_root,
    mirrored_path,
    read_frames,
    render_overlay_images,
    render_overlay_video,
)
from facecli.overlay import rows as rows_module
from facecli.overlay import video as video_module
from tests.support.overlay_checks import boxes_by_frame as _boxes_by_frame
from tests.support.overlay_checks import changed_pixels, near_boxes, outline_hits
from tests.support.overlay_checks import check_overlay as _check_overlay
from tests.support.overlay_checks import decode as _decode

H, W = 176, 320  # frame size of the generated clips (not square, so a wrong rotation shows)
FACE_FRAMES = 8  # then 2 blank frames
FPS = 12


def _scene(astronaut: np.ndarray) -> list[np.ndarray]:
    """The astronaut's head drifting right over a flat background, then two blank frames."""
    head = astronaut[10:362, 40:424][::2, ::2]  # 176 x 192
    frames = []
    for i in range(FACE_FRAMES):
        frame = np.full((H, W, 3), 96, dtype=np.uint8)
        frame[:, 10 + 12 * i: 202 + 12 * i] = head
        frames.append(frame)
    return frames + [np.full((H, W, 3), 96, dtype=np.uint8)] * 2


def _write(path: Path, frames: list[np.ndarray], codec="mpeg4", audio: str | None = None, rotation: int = 0) -> Path:
    """Encode frames (and one second of a 440 Hz tone with ``audio`` as its codec) with PyAV."""
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=FPS)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        if codec == "mpeg4":
            video.codec_context.qscale = 2
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            rate = 8000 if audio.startswith("pcm") else 16000
            sound = out.add_stream(audio, rate=rate)
            sound.layout = "mono"
        for arr in frames:
            out.mux(video.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")))
        out.mux(video.encode(None))
        if sound is not None:
            rate = sound.codec_context.sample_rate
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
            for start in range(0, rate, 1024):
                frame = av.AudioFrame.from_ndarray(tone[None, start: start + 1024], format="flt", layout="mono")
                frame.sample_rate, frame.pts = rate, start
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return path


def _streams(path: Path) -> dict[str, tuple[str, int, int]]:
    """type -> (codec, packets, bytes) of the first stream of each type."""
    found = {}
    for kind in ("video", "audio"):
        with av.open(str(path)) as box:
            streams = getattr(box.streams, kind)
            if streams:
                sizes = [p.size for p in box.demux(streams[0]) if p.dts is not None]
                found[kind] = (streams[0].codec_context.name, len(sizes), sum(sizes))
    return found


# -- video ------------------------------------------------------------------------------------


def _run(*args) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def media(tmp_path_factory, astronaut):
    root = tmp_path_factory.mktemp("overlay_media")
    frames = _scene(astronaut)
    clips = {
        "scene": _write(root / "scene.mp4", frames),
        "with_audio": _write(root / "with_audio.mp4", frames, audio="aac"),
        "mulaw": _write(root / "mulaw.avi", frames, audio="pcm_mulaw"),
        # stored turned a quarter clockwise, shown upright through the display matrix
        "rotated": _write(root / "rotated.mp4", [np.ascontiguousarray(np.rot90(f, -1)) for f in frames], rotation=90),
        "upside_down": _write(root / "upside_down.mp4", [np.ascontiguousarray(f[::-1, ::-1]) for f in frames],
                              rotation=180),
    }
    lite = root / "lite.parquet"  # two inputs in one table, every other frame measured
    _run("video", clips["scene"], clips["with_audio"], "-o", lite, "--models", "lite", "--device", "cpu", "--quiet",
         "--skip-frames", "2")
    return root, clips, lite


def test_lite_overlay_frames_times_and_drawing(media, tmp_path):
    _, clips, lite = media
    boxes = _boxes_by_frame(lite, str(clips["scene"]))
    assert set(boxes) == {0, 2, 4, 6}, "faces in the measured frames, none in the blank frame 8"
    summary = render_overlay_video(lite, clips["scene"], tmp_path / "ov.mp4")
    assert (summary.frames, summary.drawn, summary.faces) == (10, 4, 4)
    assert summary.video_codec == "libx264" and summary.audio == "none"
    assert _streams(tmp_path / "ov.mp4")["video"][0] == "h264"
    _check_overlay(tmp_path / "ov.mp4", clips["scene"], boxes)
    assert [p.name for p in tmp_path.iterdir()] == ["ov.mp4"], "no temporary file left"


def test_audio_is_copied_or_reencoded(media, tmp_path):
    _, clips, lite = media
    boxes = _boxes_by_frame(lite, str(clips["with_audio"]))
    summary = render_overlay_video(lite, clips["with_audio"], tmp_path / "a.mp4")
    assert summary.audio == "copied" and summary.drawn == 4
    assert _streams(tmp_path / "a.mp4")["audio"] == _streams(clips["with_audio"])["audio"], "same packets"
    _check_overlay(tmp_path / "a.mp4", clips["with_audio"], boxes)
    # mp4 cannot hold mu-law audio: re-encoded to AAC; the AVI's frames take the scene's rows
    summary = render_overlay_video(lite, clips["mulaw"], tmp_path / "m.mp4", input_name=str(clips["scene"]))
    assert summary.audio == "aac"
    codec, packets, _ = _streams(tmp_path / "m.mp4")["audio"]
    with av.open(str(tmp_path / "m.mp4")) as box:
        duration = float(box.streams.audio[0].duration * box.streams.audio[0].time_base)
    assert codec == "aac" and packets > 5 and duration == pytest.approx(1.0, abs=0.15)
    _check_overlay(tmp_path / "m.mp4", clips["mulaw"], _boxes_by_frame(lite, str(clips["scene"])))


def test_mpeg4_fallback(media, tmp_path):
    _, clips, lite = media
    summary = render_overlay_video(lite, clips["scene"], tmp_path / "ov.mp4", codec="mpeg4")
    assert summary.video_codec == "mpeg4" and _streams(tmp_path / "ov.mp4")["video"][0] == "mpeg4"
    _check_overlay(tmp_path / "ov.mp4", clips["scene"], _boxes_by_frame(lite, str(clips["scene"])))


def test_rotated_input_is_drawn_upright(media, tmp_path):
    _, clips, lite = media
    with av.open(str(clips["rotated"])) as box:
        first = next(box.decode(video=0))
        assert first.rotation == 90 and (first.width, first.height) == (H, W)
    name = str(clips["scene"])  # the rows of the upright clip, whose frames the rotated file shows
    for rotation in ("auto", 90, -270):
        render_overlay_video(lite, clips["rotated"], tmp_path / "r.mp4", input_name=name, rotation=rotation)
        _check_overlay(tmp_path / "r.mp4", clips["rotated"], _boxes_by_frame(lite, name), turns=1)
        with av.open(str(tmp_path / "r.mp4")) as box:
            assert next(box.decode(video=0)).rotation == 0, "written upright, no display matrix"
    with pytest.raises(OverlayError, match=r"320x176 there.*176x320"):
        render_overlay_video(lite, clips["rotated"], tmp_path / "bad.mp4", input_name=name)
    with pytest.raises(OverlayError, match="multiple of 90"):
        render_overlay_video(lite, clips["rotated"], tmp_path / "bad.mp4", input_name=name, rotation=45)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.mp4"]


def test_rotation_zero_draws_as_decoded_and_keeps_the_display_matrix(media, tmp_path):
    _, clips, lite = media
    name = str(clips["scene"])
    boxes = _boxes_by_frame(lite, name)
    # rows of the upright clip drawn on the stored (upside-down) pictures: same size, so accepted
    render_overlay_video(lite, clips["upside_down"], tmp_path / "u.mp4", input_name=name)
    _check_overlay(tmp_path / "u.mp4", clips["upside_down"], boxes)
    with av.open(str(tmp_path / "u.mp4")) as box:
        assert abs(next(box.decode(video=0)).rotation) == 180, "shown turned, as the input is"
    render_overlay_video(lite, clips["upside_down"], tmp_path / "a.mp4", input_name=name, rotation="auto")
    _check_overlay(tmp_path / "a.mp4", clips["upside_down"], boxes, turns=2)
    with pytest.raises(ValueError):
        render_overlay_video(lite, clips["upside_down"], tmp_path / "x.mp4", input_name=name, rotation="left")


def test_featv2_csv_table_with_aus_gaze_and_mesh(media, featv2_weights, tmp_path):
    _, clips, _ = media
    table = tmp_path / "f2.csv"
    _run("video", clips["scene"], "-o", table, "--models", "feat-v2", "--weights-dir", featv2_weights,
         "--device", "cpu", "--quiet", "--skip-frames", "3", "--identity-model", "none")
    first = next(f for f in read_frames(table, str(clips["scene"]), mesh=True) if len(f.faces))
    faces = first.faces
    assert faces.aus is not None and faces.aus.shape[1] == 20 and faces.gaze is not None and faces.pose is not None
    assert faces.mesh is not None and faces.mesh.shape[1:] == (478, 2) and faces.emotions.shape[1] >= 7
    boxes = _boxes_by_frame(table, str(clips["scene"]))
    summary = render_overlay_video(table, clips["scene"], tmp_path / "ov.mp4", mesh=True)
    assert summary.drawn == len(boxes) > 0 and summary.faces == sum(len(b) for b in boxes.values())
    # random-weight boxes overlap each other's labels, so only most of each outline must show
    _check_overlay(tmp_path / "ov.mp4", clips["scene"], boxes, outline=0.4)


def _minimal_table(path: Path, input_name: str, height: int, width: int, boxes: dict[int, list[float]]) -> Path:
    """A table with only the columns every facecli output has; landmarks NaN (not drawn)."""
    import pyarrow as pa

    cols: dict[str, list] = {c: [] for c in ("FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight", "FaceScore")}
    for frame in sorted(boxes):
        for c, v in zip(cols, boxes[frame] + [0.9]):
            cols[c].append(v)
    n = len(boxes)
    table = {**cols, **{f"{a}_{i}": [float("nan")] * n for a in "xy" for i in range(68)}}
    table.update(FrameHeight=[height] * n, FrameWidth=[width] * n, input=[input_name] * n, frame=sorted(boxes))
    pq.write_table(pa.table(table), path)
    return path


def test_odd_frame_size_and_a_minimal_table(tmp_path):
    frames = [np.full((47, 65, 3), 30 + 20 * i, dtype=np.uint8) for i in range(5)]
    clip = _write(tmp_path / "odd.mp4", frames)
    table = _minimal_table(tmp_path / "t.parquet", str(clip), 47, 65, {1: [10.0, 8.0, 30.0, 30.0]})
    summary = render_overlay_video(table, clip, tmp_path / "ov.mp4")
    assert summary.video_codec == "libx264" and (summary.frames, summary.drawn) == (5, 1)
    _check_overlay(tmp_path / "ov.mp4", clip, {1: np.array([[10.0, 8.0, 40.0, 38.0]])})
    with av.open(str(tmp_path / "ov.mp4")) as box:
        assert box.streams.video[0].codec_context.pix_fmt == "yuv444p", "4:2:0 H.264 needs even sizes"


def test_small_row_groups_and_batches_give_the_same_frames(media, tmp_path, monkeypatch):
    _, clips, lite = media
    split = tmp_path / "split.parquet"
    pq.write_table(pq.read_table(lite), split, row_group_size=2)
    monkeypatch.setattr(rows_module, "_BATCH_ROWS", 3)
    groups_read = []
    iter_batches = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        groups_read.append(kwargs.get("row_groups"))
        return iter_batches(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    for name in (str(clips["scene"]), str(clips["with_audio"])):
        a, b = list(read_frames(lite, name)), list(read_frames(split, name))
        want = [(name, i) for i in range(0, 10, 2)]
        assert [(f.input, f.frame) for f in a] == [(f.input, f.frame) for f in b] == want
        assert all(np.array_equal(x.faces.boxes, y.faces.boxes) for x, y in zip(a, b))
    # 5 rows per input in row groups of 2: the groups holding only the other input are not read
    assert groups_read == [[0], [0, 1, 2], [0], [2, 3, 4]]
    everything = [(f.input, f.frame) for f in read_frames(split)]
    assert len(everything) == 10 and everything[0][0] == str(clips["scene"])


def test_failures_leave_no_file(media, tmp_path, monkeypatch):
    root, clips, lite = media
    out = tmp_path / "ov.mp4"
    with pytest.raises(OverlayError, match="no rows for input"):
        render_overlay_video(lite, clips["mulaw"], out)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 500)
    with pytest.raises(OverlayError, match="bad.mp4: not a readable video"):
        render_overlay_video(lite, bad, out, input_name=str(clips["scene"]))
    short = _write(tmp_path / "short.mp4", _decode(clips["scene"])[1][:5])
    with pytest.raises(OverlayError, match="rows for frame 6 .* has 5 frames"):
        render_overlay_video(lite, short, out, input_name=str(clips["scene"]))
    with pytest.raises(OverlayError, match="missing.parquet: no such file"):
        render_overlay_video(tmp_path / "missing.parquet", clips["scene"], out)
    with pytest.raises(OverlayError, match="output folder does not exist"):
        render_overlay_video(lite, clips["scene"], tmp_path / "nowhere" / "ov.mp4")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(video_module, "draw_faces", interrupted)
    with pytest.raises(KeyboardInterrupt):
        render_overlay_video(lite, clips["scene"], out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4", "short.mp4"]


# -- images -----------------------------------------------------------------------------------


def test_image_overlays_mirror_the_inputs(tmp_path, astronaut):
    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    (src / "b" / "c").mkdir(parents=True)
    Image.fromarray(astronaut).save(src / "a" / "astro.png")
    Image.fromarray(astronaut[::2, ::2]).save(src / "b" / "c" / "small.jpg", quality=95)
    Image.fromarray(astronaut[:, ::-1]).save(src / "b" / "gone.png")
    table = tmp_path / "detect.parquet"
    _run("detect", src / "a", src / "b" / "c", src / "b" / "gone.png", "-o", table, "--models", "lite",
         "--device", "cpu", "--quiet")
    (src / "b" / "gone.png").write_bytes(b"not a png any more")
    out = tmp_path / "overlays"
    summary = render_overlay_images(table, out)
    assert len(summary.errors) == 1 and "gone.png" in summary.errors[0] and "\n" not in summary.errors[0]
    assert summary.written == (out / "a" / "astro.png", out / "b" / "c" / "small.jpg")
    for name in ("a/astro.png", "b/c/small.jpg"):
        before = np.asarray(Image.open(src / name).convert("RGB"))
        after = np.asarray(Image.open(out / name).convert("RGB"))
        assert after.shape == before.shape
        boxes = _boxes_by_frame(table, str(src / name))
        assert len(boxes) == 1
        (face,) = boxes.values()
        changed = changed_pixels(before, after)
        assert not changed[~near_boxes(before.shape, face)].any() and outline_hits(changed, face[0]) > 0.9
    assert sorted(p.name for p in (out / "a").iterdir()) == ["astro.png"], "no temporary file left"


def test_paths():
    assert common_root(["/d/a/x.mp4", "/d/a/b/y.mp4", "/d/c/z.mp4"]) == Path("/d")
    assert common_root(["/d/a/x.mp4"]) == Path("/d/a")
    assert mirrored_path("/d/a/b/y.mov", "/d", "/ov", ".mp4") == Path("/ov/a/b/y.mp4")
    assert mirrored_path("/e/y.mov", "/d", "/ov") == Path("/ov/y.mov")
    with pytest.raises(ValueError):
        common_root([])
