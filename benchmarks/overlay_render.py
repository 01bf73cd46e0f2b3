"""Overlay rendering speed and memory at 720p, against plain decoding and transcoding in the same run.

    .venv/bin/python benchmarks/overlay_render.py [--frames 120] [--size 1280x720] [--json OUT.json]
        [--models lite|feat-v2] [--weights-dir DIR]

A clip of scikit-image's astronaut drifting over a 1280x720 background is written (H.264), one
facecli run measures it (lite with the full-range detector by default, untimed), then in this
one process, each after a warm-up on the first 10 frames:

* decode: PyAV decode of every frame to RGB arrays (what any overlay has to do);
* transcode: decode + libx264 encode of every frame, no drawing, same settings as the overlay
  (crf 18, veryfast) - the floor for an overlay;
* overlay, overlay --mesh, overlay mpeg4: ``render_overlay_video`` on the finished table.

Frames per second are reported with ratios to decode and to transcode; absolute figures depend
on the machine and its load, the ratios much less. Peak RSS is taken in child processes
rendering the clip and the clip repeated 4 times (its table repeated with shifted frames), to
show that memory does not grow with length.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_clip(path: Path, n: int, width: int, height: int, fps: int = 30, period: int | None = None) -> Path:
    """n frames of the astronaut swinging left and right once every ``period`` frames (default n)."""
    from skimage import data
    from skimage.transform import resize

    face = (resize(data.astronaut(), (min(600, height), min(600, height)), anti_aliasing=True) * 255).astype(np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast"}
        for i in range(n):
            canvas = np.full((height, width, 3), 90, dtype=np.uint8)
            x = int((width - face.shape[1]) * (0.5 + 0.4 * np.sin(2 * np.pi * i / (period or n))))
            canvas[(height - face.shape[0]) // 2:(height + face.shape[0]) // 2, x: x + face.shape[1]] = face
            out.mux(stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def measure_table(clip: Path, table: Path, models: str, weights_dir: str | None) -> None:
    from typer.testing import CliRunner

    from facecli.cli import app

    args = ["video", str(clip), "-o", str(table), "--models", models, "--device", "cpu", "--quiet"]
    args += ["--lite-detector", "full"] if models == "lite" else ["--weights-dir", str(weights_dir)]
    result = CliRunner().invoke(app, args)
    if result.exit_code != 0:
        raise SystemExit(f"facecli run failed: {result.output}")


def time_decode(clip: Path) -> int:
    with av.open(str(clip)) as box:
        box.streams.video[0].thread_type = "AUTO"
        return sum(1 for f in box.decode(video=0) if f.to_ndarray(format="rgb24") is not None)


def time_transcode(clip: Path, dst: Path) -> int:
    n = 0
    with av.open(str(clip)) as box, av.open(str(dst), "w") as out:
        vin = box.streams.video[0]
        vin.thread_type = "AUTO"
        vout = out.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        vout.time_base = vout.codec_context.time_base = vin.time_base
        vout.options = {"crf": "18", "preset": "veryfast"}
        for frame in box.decode(vin):
            rgb = frame.to_ndarray(format="rgb24")  # the overlay's conversion, without drawing
            new = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            new.pts, new.time_base = frame.pts, frame.time_base
            out.mux(vout.encode(new))
            n += 1
        out.mux(vout.encode(None))
    return n


def repeated_table(table: Path, out: Path, times: int, frames: int, fps: int, input_name: str) -> Path:
    """The table of a clip repeated ``times`` times, for the repeated clip (frame and time shifted)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    base = pq.read_table(table)
    parts = []
    for k in range(times):
        part = base.set_column(base.schema.get_field_index("frame"), "frame", pc.add(base["frame"], k * frames))
        shifted = pc.add(part["time_s"], k * frames / fps)
        part = part.set_column(part.schema.get_field_index("time_s"), "time_s", shifted)
        parts.append(part.set_column(part.schema.get_field_index("input"), "input",
                                     pa.array([input_name] * part.num_rows, pa.string())))
    pq.write_table(pa.concat_tables(parts), out)
    return out


def peak_rss_mb(table: Path, clip: Path, dst: Path, input_name: str) -> float:
    """High-water RSS of a fresh process rendering one overlay (VmHWM: ru_maxrss would carry the
    parent's peak across fork and exec)."""
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from facecli.overlay import render_overlay_video\n"
        "render_overlay_video(%r, %r, %r, input_name=%r)\n"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n"
    ) % (str(REPO), str(table), str(clip), str(dst), input_name)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--models", default="lite", choices=("lite", "feat-v2"))
    parser.add_argument("--weights-dir", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    from facecli.overlay import render_overlay_video

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = make_clip(tmp / "clip.mp4", args.frames, width, height)
        table = tmp / "table.parquet"
        measure_table(clip, table, args.models, args.weights_dir)
        render_overlay_video(table, clip, tmp / "warm.mp4")  # warm-up: fonts, encoder, page cache
        runs = {
            "decode": lambda: time_decode(clip),
            "transcode": lambda: time_transcode(clip, tmp / "t.mp4"),
            "overlay": lambda: render_overlay_video(table, clip, tmp / "o.mp4").frames,
            "overlay --mesh": lambda: render_overlay_video(table, clip, tmp / "m.mp4", mesh=True).frames,
            "overlay mpeg4": lambda: render_overlay_video(table, clip, tmp / "4.mp4", codec="mpeg4").frames,
        }
        fps = {}
        for name, run in runs.items():
            start = time.perf_counter()
            frames = run()
            fps[name] = frames / (time.perf_counter() - start)
        drawn = render_overlay_video(table, clip, tmp / "o.mp4")
        long_clip = make_clip(tmp / "long.mp4", 4 * args.frames, width, height, period=args.frames)
        long_table = repeated_table(table, tmp / "long.parquet", 4, args.frames, 30, str(long_clip))
        rss = {
            f"{args.frames} frames": peak_rss_mb(table, clip, tmp / "r1.mp4", str(clip)),
            f"{4 * args.frames} frames": peak_rss_mb(long_table, long_clip, tmp / "r4.mp4", str(long_clip)),
        }
    print(f"{width}x{height}, {args.frames} frames, {drawn.drawn} drawn ({drawn.faces} faces, {args.models})")
    print(f"{'stage':<18}{'frames/s':>10}{'x decode':>10}{'x transcode':>13}")
    for name, value in fps.items():
        print(f"{name:<18}{value:>10.1f}{value / fps['decode']:>10.2f}{value / fps['transcode']:>13.2f}")
    for name, mb in rss.items():
        print(f"peak RSS rendering {name}: {mb:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "frames": args.frames, "fps": fps, "peak_rss_mb": rss}))


if __name__ == "__main__":
    main()
