"""Peak memory of facecli runs: a clip, the same clip 10x longer, and a folder of 100 short clips.

Runs ``facecli video`` as a subprocess and samples the resident memory of its whole process tree
(the main process and any ``--jobs`` workers) from /proc every 50 ms; reports the peak of the
sum and the peak of the largest single process. Memory that stays flat from the short clip to
the 10x longer one, and per worker on the folder, is what "bounded" means here.

    python benchmarks/memory_scale.py [--frames 300] [--models lite] [--jobs 2] [--json out.json]

Linux only (reads /proc). Generated media: the astronaut from scikit-image moving over a
320x320 frame, H.264.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _tree(pid: int) -> list[int]:
    pids, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as fh:
                kids = [int(k) for k in fh.read().split()]
        except OSError:
            kids = []
        pids += kids
        frontier += kids
    return pids


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measure(cmd: list[str]) -> dict:
    """Run ``cmd``; peak total and single-process RSS (MB) of its process tree, and wall seconds."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_total = peak_single = 0.0
    while proc.poll() is None:
        # the multiprocessing manager and loky's resource tracker are tiny; counting them is harmless
        sizes = [_rss_mb(p) for p in _tree(proc.pid)]
        peak_total = max(peak_total, sum(sizes))
        peak_single = max(peak_single, max(sizes, default=0.0))
        time.sleep(0.05)
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-2000:]}")
    return {"peak_total_mb": round(peak_total), "peak_process_mb": round(peak_single),
            "seconds": round(time.perf_counter() - started, 1)}


def make_clip(path: Path, frames: int, seed: int = 0) -> Path:
    import av
    from skimage import data

    face = data.astronaut()[:300, 100:400]
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 320
        stream.pix_fmt = "yuv420p"
        x, y = 10, 10
        for _ in range(frames):
            canvas = np.full((320, 320, 3), 40, dtype=np.uint8)
            x = int(np.clip(x + rng.integers(-3, 4), 0, 20))
            y = int(np.clip(y + rng.integers(-3, 4), 0, 20))
            canvas[y : y + 300, x : x + 300] = face
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="frames of the short clip (the long one has 10x)")
    parser.add_argument("--clips", type=int, default=100, help="short clips in the folder")
    parser.add_argument("--clip-frames", type=int, default=10, help="frames per clip in the folder")
    parser.add_argument("--models", default="lite")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    facecli = [sys.executable, "-m", "facecli", "video", "--models", args.models, "--device", "cpu", "-q"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        short = make_clip(tmp / "short.mp4", args.frames)
        long = make_clip(tmp / "long.mp4", 10 * args.frames)
        folder = tmp / "clips"
        folder.mkdir()
        for k in range(args.clips):
            make_clip(folder / f"clip{k:03d}.mp4", args.clip_frames, seed=k)
        results = {
            f"clip {args.frames} frames": measure([*facecli, str(short), "-o", str(tmp / "s.parquet")]),
            f"clip {10 * args.frames} frames": measure([*facecli, str(long), "-o", str(tmp / "l.parquet")]),
            f"{args.clips} clips, --jobs {args.jobs}": measure(
                [*facecli, str(folder), "-o", f"{tmp}/out/", "--jobs", str(args.jobs)]
            ),
            f"{args.clips} clips, --jobs 1": measure([*facecli, str(folder), "-o", f"{tmp}/out1/"]),
        }
    width = max(len(k) for k in results)
    print(f"{'run':<{width}}  peak total MB  peak process MB  seconds   (cpu count {os.cpu_count()})")
    for name, r in results.items():
        print(f"{name:<{width}}  {r['peak_total_mb']:>13}  {r['peak_process_mb']:>15}  {r['seconds']:>7}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
