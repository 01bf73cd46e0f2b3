"""facecli lite vs MediaPipe 0.10.21's face mesh, side by side on one clip.

    PYTHONPATH=. python benchmarks/compare_mediapipe.py [CLIP] [--frames 300] [--threads 2]
        [--rounds 1] [--json out.json] [--litert SOURCES]

One run times, in turn (``--rounds`` times, alternating):

* MediaPipe ``mp.solutions.face_mesh`` (refine_landmarks=True: 478 points with the iris;
  max_num_faces=1) in video mode (tracks from the previous landmarks, detects when it loses the
  face) and in static-image mode (detects on every frame), run by
  ``benchmarks/mediapipe_facemesh_timing.py`` in ``$FACECLI_MEDIAPIPE_PYTHON`` or ``.mp/bin/python``
  on the clip's frames decoded here; the time decoding takes (PyAV, measured in this run) is
  added to MediaPipe's, so both sides include decoding;
* facecli lite through the real engine (``facecli video`` to Parquet), timed stage by stage as
  ``facecli bench`` does, at its defaults, at its defaults with ``--max-faces 1`` (MediaPipe's
  ``max_num_faces=1``: while the one face is followed, no scheduled detection) and with
  ``--detect-every 1``. Two figures per run:
  the whole pipeline (detection, mesh, iris, pose, emotions, identity, tracking, writing) and
  the stages MediaPipe's face mesh also does (decoding as waited for, upload, detection,
  following, mesh, iris).

With ``--litert SOURCES`` (ai-edge-litert installed, SOURCES the folder of MediaPipe's original
.tflite files), the defaults and ``--max-faces 1`` runs are made once more with facecli's mesh and
iris networks run by LiteRT, MediaPipe's runtime, from those files instead of PyTorch
(benchmarks/runtime_floor.py checks that both give the same outputs): how far the engine gets
when the networks cost what they cost in MediaPipe. facecli itself has no LiteRT path.

Pairs: MediaPipe video mode vs facecli defaults, and vs facecli ``--max-faces 1`` (the same
work: one face, detected when lost); MediaPipe static mode vs facecli ``--detect-every 1``
(equal work: a detection on every frame).
Without CLIP: facecli bench's generated 1280x720 clip with one real face.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HELPER = Path(__file__).resolve().with_name("mediapipe_facemesh_timing.py")
MESH_STAGES = ("wait for frames", "upload", "detect", "follow", "analyze/mesh", "analyze/iris")


def time_mediapipe(frames_npy: Path, static: bool) -> dict | None:
    python = os.environ.get("FACECLI_MEDIAPIPE_PYTHON") or str(REPO / ".mp" / "bin" / "python")
    if not Path(python).exists():
        return None
    cmd = [python, str(HELPER), str(frames_npy), "--passes", "1"] + (["--static"] if static else [])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # its own environment's packages only
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=env)
    if out.returncode != 0:
        print(f"mediapipe run failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[0])


def time_lite(clip: Path, frames: int, threads: int, **settings) -> dict:
    from facecli.bench import run_bench
    from facecli.config import RunConfig

    config = RunConfig(inputs=("x",), output=Path("x/"), output_is_dir=True, kind="video", models="lite",
                       device="cpu", **settings).validate()
    report = run_bench(clip, config, frames=frames, threads=threads)
    mesh = sum(s.seconds for s in report.stages if s.thread == "main" and s.path in MESH_STAGES)
    return {"frames": report.frames, "faces": report.faces, "seconds": report.seconds, "mesh_seconds": mesh,
            "fps": report.fps, "mesh_fps": report.frames / mesh}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", type=Path)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", default="1280x720", help="WxH of the generated clip")
    parser.add_argument("--threads", type=int, default=0, help="facecli torch threads (0: its default)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--litert", type=Path, default=None, metavar="SOURCES",
                        help="also time facecli with its mesh and iris networks run by LiteRT from the original "
                             ".tflite files in this folder (needs ai-edge-litert; see benchmarks/runtime_floor.py)")
    args = parser.parse_args()
    if args.litert:
        from runtime_floor import source_problem

        problem = source_problem(args.litert)
        if problem:
            parser.error(f"--litert: {problem}")
    from facecli.bench.clip import make_clip
    from facecli.cli import measure

    every = measure.DETECT_EVERY.default
    from compare_pyfeat import decode  # noqa: E402  (same folder)

    one = "facecli lite defaults + max faces 1"
    runs: dict[str, list[dict]] = {"mediapipe video mode": [], "mediapipe static mode": [],
                                   f"facecli lite defaults (detect every {every})": [], one: [],
                                   "facecli lite detect every 1": []}
    lite_defaults, lite_one = "LiteRT mesh+iris, defaults", "LiteRT mesh+iris, max faces 1"
    if args.litert:
        runs.update({lite_defaults: [], lite_one: []})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        width, height = (int(v) for v in args.size.split("x"))
        clip = args.clip or make_clip(tmp / "clip.mp4", args.frames, width, height)
        frames, _ = decode(clip, args.frames)
        np.save(tmp / "frames.npy", frames.permute(0, 2, 3, 1).contiguous().numpy())
        n = frames.shape[0]
        for _ in range(args.rounds):
            for static in (False, True):
                _, decode_s = decode(clip, args.frames)
                ref = time_mediapipe(tmp / "frames.npy", static)
                if ref is not None:
                    seconds = ref["frames"] / ref["fps"] + decode_s
                    runs[f"mediapipe {'static' if static else 'video'} mode"].append(
                        {"frames": n, "faces": ref["faces_per_frame"] * n, "seconds": seconds, "fps": n / seconds,
                         "decode_s": decode_s})
            runs[f"facecli lite defaults (detect every {every})"].append(
                time_lite(clip, args.frames, args.threads, detect_every=every))  # the CLI's default, not RunConfig's 1
            runs[one].append(time_lite(clip, args.frames, args.threads, detect_every=every, max_faces=1))
            runs["facecli lite detect every 1"].append(time_lite(clip, args.frames, args.threads, detect_every=1))
            if args.litert:
                from runtime_floor import litert_mesh_and_iris

                with litert_mesh_and_iris(args.litert):
                    runs[lite_defaults].append(time_lite(clip, args.frames, args.threads, detect_every=every))
                    runs[lite_one].append(time_lite(clip, args.frames, args.threads, detect_every=every, max_faces=1))
    print(f"clip {args.clip or 'generated'} {frames.shape[-1]}x{frames.shape[-2]}, {n} frames, {args.rounds} round(s); "
          "decoding included on both sides")
    med = lambda rows, key: statistics.median(r[key] for r in rows)  # noqa: E731
    for name, rows in runs.items():
        if not rows:
            continue
        line = f"{name:<40}{med(rows, 'fps'):>8.1f} frames/s  {med(rows, 'faces') / n:.2f} faces/frame"
        if "mesh_fps" in rows[0]:
            line += f"   detection+mesh+iris stages {med(rows, 'mesh_fps'):.1f} frames/s"
        print(line)
    pairs = [("mediapipe video mode", f"facecli lite defaults (detect every {every})"), ("mediapipe video mode", one),
             ("mediapipe static mode", "facecli lite detect every 1"),
             ("mediapipe video mode", lite_defaults), ("mediapipe video mode", lite_one)]
    for peer, ours in pairs:
        if runs[peer] and runs.get(ours):
            whole = statistics.median(o["fps"] / p["fps"] for o, p in zip(runs[ours], runs[peer]))
            mesh = statistics.median(o["mesh_fps"] / p["fps"] for o, p in zip(runs[ours], runs[peer]))
            print(f"{ours} / {peer}: detection+mesh+iris x{mesh:.2f}, whole pipeline x{whole:.2f}")
    if not runs["mediapipe video mode"]:
        print("mediapipe reference environment not found: only facecli timed")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
