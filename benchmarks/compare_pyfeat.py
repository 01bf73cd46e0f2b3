"""facecli feat-v2 vs py-feat 2.1.5 Detectorv2, side by side on one clip with the same weights.

    PYTHONPATH=. python benchmarks/compare_pyfeat.py [CLIP] [--frames 30] [--size 1280x720]
        [--batch-size 1] [--threads 2] [--device cpu] [--rounds 1] [--weights-dir DIR] [--json out.json]

``--device cuda`` runs both sides on the GPU (the frames are decoded on the CPU either way;
py-feat's environment then needs a CUDA build of torch).

One run times, interleaved (``--rounds`` passes of each side over the same ``--frames`` frames,
the order turning every round, each side's models loaded once, so the drifting speed of a shared
machine falls on every side alike; the ratio reported is the median over rounds of the
per-round ratio, and the ratio of the best passes):

* py-feat 2.1.5 ``Detectorv2.detect(frames, data_type="tensor")`` (fp32, its default), in the
  interpreter named by ``$FACECLI_PYFEAT_PYTHON`` or ``.ref/bin/python``, on the clip's frames;
  its environment has no video reader, so the frames are decoded here with PyAV and the time
  that decoding takes (measured in this run) is added to py-feat's: both sides include decoding;
* facecli at equal work: ``--detect-size full --detect-every 1 --precision fp32`` (what py-feat
  computes, in float32 with the fastest memory layouts), through the real engine (``facecli
  video`` from the file to Parquet);
* facecli at equal work with ``--precision exact`` (py-feat's own NCHW layouts: its arithmetic
  operation for operation);
* facecli at its defaults (``facecli video``'s own defaults: detect size, detect every, precision);
* facecli at its defaults with ``--max-faces 1`` (the best face of each detection; while it is
  followed, no scheduled detection: MediaPipe's ``max_num_faces``), for one-participant clips.

Both use the same weights: ``--weights-dir`` or random weights in the published layouts with
the detector calibrated on the clip (so faces are found; compute is that of the real files).
Random detectors find a number of faces that depends on the frame size (real ones find the
faces that are there); with random weights each side's detection threshold is set so that it
finds about one face per frame at its detect size (printed; py-feat and facecli at equal work
share theirs), so every side measures the "720p, one face" case. A random detector's best
scores fall unevenly over frames (none on one frame, three on the next), which matters when
faces are followed from the frames the detector runs on: the defaults' threshold is therefore
found by bisection on untimed runs of the engine itself, for the clip's faces per frame closest
to one (printed); the ``--max-faces 1`` run's threshold lets every detection frame keep one face.
Each side has one untimed warm-up batch. At equal work (both precisions) the detections are
compared row by row (boxes and scores, frame by frame) and the largest difference is printed:
"identical" means every face of both within 1e-3 pixel / 1e-4 score.

Without CLIP it makes facecli bench's clip: 1280x720, one real face moving, H.264.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
HELPER = Path(__file__).resolve().with_name("pyfeat_detect_timing.py")
RECT = ["FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight"]


def cli_defaults() -> dict:
    """``facecli video``'s own defaults for the speed settings."""
    from facecli.cli import measure
    from facecli.config import parse_detect_size

    return {"detect_size": parse_detect_size(measure.DETECT_SIZE_VIDEO.default),
            "detect_every": measure.DETECT_EVERY.default, "precision": measure.PRECISION_VIDEO.default}


def decode(clip: Path, frames: int) -> tuple[torch.Tensor, float]:
    """The clip's first ``frames`` frames, Tensor[N, 3, H, W] uint8, and the seconds decoding took."""
    from facecli.io.video import iter_frames

    start = time.perf_counter()
    arrays = [arr for _, (_, _, arr) in zip(range(frames), iter_frames(clip))]
    seconds = time.perf_counter() - start
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous(), seconds


class PyFeat:
    """py-feat's Detectorv2 loaded once in its own interpreter; :meth:`time` runs one timed pass."""

    def __init__(self, frames_npy: Path, weights: Path, batch: int, threads: int, out_csv: Path,
                 threshold: float = 0.5, device: str = "cpu") -> None:
        python = os.environ.get("FACECLI_PYFEAT_PYTHON") or str(REPO / ".ref" / "bin" / "python")
        self.proc = None
        if not Path(python).exists():
            return
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "tests" / "parity" / "ref")}
        self.proc = subprocess.Popen(
            [python, str(HELPER), str(frames_npy), str(weights), str(batch), device, str(threads), str(out_csv),
             "--serve", f"--threshold={threshold}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        if not json.loads(self.proc.stdout.readline() or "{}").get("ready"):
            print("py-feat failed to start", file=sys.stderr)
            self.proc = None

    def time(self) -> dict | None:
        if self.proc is None:
            return None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


class Facecli:
    """facecli feat-v2 with given settings, models loaded once; :meth:`time` runs the real engine
    over the clip's first frames once (after one untimed warm-up batch at load)."""

    def __init__(self, clip: Path, weights: Path, frames: int, batch: int, out: Path, warm: bool = True,
                 device: str = "cpu", **settings) -> None:
        from facecli.config import RunConfig
        from facecli.models.sets import build_model_set
        from facecli.pipeline.engine import run
        from facecli.pipeline.report import Reporter

        self.config = RunConfig(inputs=(str(clip),), output=out, kind="video", models="feat-v2",
                                weights_dir=weights, device=device, batch_size=batch, max_frames=frames, quiet=True,
                                **settings).validate()
        self.model_set, self.hashes = build_model_set(self.config, lambda line: None)
        if warm:
            run(replace(self.config, output=out.with_name("warmup.parquet"), max_frames=batch), self.model_set,
                Reporter(quiet=True), self.hashes)

    def time(self) -> dict:
        from facecli.pipeline.engine import run
        from facecli.pipeline.report import Reporter

        start = time.perf_counter()
        summary = run(self.config, self.model_set, Reporter(quiet=True), self.hashes)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "frames": summary.frames, "faces": summary.faces,
                "precision": self.model_set.info.precision}


def one_face_threshold(clip: Path, weights: Path, args, settings: dict) -> float:
    """Random weights: the detection threshold at which ``settings`` find about one face per frame
    on the clip (random detectors find a number of faces that depends on the frame size; real
    ones find the faces that are there). Used by both sides at equal work, and by the defaults."""
    from facecli.bench import tune_detection_threshold
    from facecli.config import RunConfig

    config = RunConfig(inputs=(str(clip),), output=Path("x.parquet"), kind="video", models="feat-v2",
                       weights_dir=weights, device=args.device, batch_size=args.batch_size, **settings).validate()
    # a random full-frame detector may score under one face per frame above 0.5: allow lower thresholds
    return tune_detection_threshold(config, clip, args.frames, 1.0, floor=0.02)


def engine_threshold(clip: Path, weights: Path, args, settings: dict, tmp: Path, start: float) -> float:
    """Random weights and faces followed between detections: the threshold whose real run (the
    engine, untimed) gives the clip closest to one face per frame, by bisection from ``start``.

    A threshold set on detection scores alone is right on average, not frame by frame: a random
    detector may score three faces on one detection frame and none on the next, and the faces of
    a detection frame are followed to the next one (a frame without faces is detected again).
    """
    lo, hi, best = 0.02, 0.9999, (start, float("inf"))
    threshold = start
    for _ in range(10):
        run = Facecli(clip, weights, args.frames, args.batch_size, tmp / "tune.parquet", warm=False,
                      device=args.device, detection_threshold=threshold, **settings).time()
        rate = run["faces"] / max(run["frames"], 1)
        if abs(rate - 1.0) < abs(best[1] - 1.0):
            best = (threshold, rate)
        if abs(rate - 1.0) < 0.05:
            break
        lo, hi = (threshold, hi) if rate > 1.0 else (lo, threshold)
        threshold = (lo + hi) / 2
    return best[0]


def compare_detections(ours: pd.DataFrame, theirs: pd.DataFrame) -> dict:
    """Largest differences of boxes and scores, faces sorted by score within each frame."""
    a = ours[ours["FaceScore"] > 0].sort_values(["frame", "FaceScore"], ascending=[True, False])
    b = theirs[theirs["FaceScore"] > 0].sort_values(["frame", "FaceScore"], ascending=[True, False])
    same_faces = a["frame"].tolist() == b["frame"].tolist()
    out = {"faces_facecli": len(a), "faces_pyfeat": len(b), "same_faces_per_frame": same_faces}
    if same_faces and len(a):
        out["max_box_diff_px"] = float(np.abs(a[RECT].to_numpy() - b[RECT].to_numpy()).max())
        out["max_score_diff"] = float(np.abs(a["FaceScore"].to_numpy() - b["FaceScore"].to_numpy()).max())
        out["identical"] = out["max_box_diff_px"] < 1e-3 and out["max_score_diff"] < 1e-4
    else:
        out["identical"] = False
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", type=Path)
    parser.add_argument("--frames", type=int, default=12, help="frames per timed pass")
    parser.add_argument("--size", default="1280x720", help="WxH of the generated clip")
    parser.add_argument("--batch-size", type=int, default=1, help="frames per batch, both sides")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N], both sides")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes of each side, interleaved")
    parser.add_argument("--weights-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from facecli.bench import random_weights_dir
    from facecli.bench.clip import make_clip

    defaults = cli_defaults()
    equal = {"detect_size": None, "detect_every": 1, "precision": "fp32"}
    one = {**defaults, "max_faces": 1}
    exact = {**equal, "precision": "exact"}
    rows: dict[str, list[dict]] = {"py-feat": [], "facecli equal work": [], "facecli equal work, exact": [],
                                   "facecli defaults": [], "facecli defaults, max 1 face": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        width, height = (int(v) for v in args.size.split("x"))
        clip = args.clip or make_clip(tmp / "clip.mp4", args.frames, width, height)
        weights = args.weights_dir or random_weights_dir(clip, tmp, "arcface")
        frames, decode_s = decode(clip, args.frames)
        decode_s = min(decode_s, decode(clip, args.frames)[1])  # PyAV decoding, as py-feat would pay it
        np.save(tmp / "frames.npy", frames.numpy())
        full_t = 0.5 if args.weights_dir else one_face_threshold(clip, weights, args, equal)
        threshold = 0.5 if args.weights_dir else engine_threshold(
            clip, weights, args, defaults, tmp, one_face_threshold(clip, weights, args, defaults))
        one_t = 0.5 if args.weights_dir else one_face_threshold(clip, weights, args, one)
        pyfeat = PyFeat(tmp / "frames.npy", weights, args.batch_size, args.threads, tmp / "pyfeat.csv", full_t,
                        args.device)
        equal_run = Facecli(clip, weights, args.frames, args.batch_size, tmp / "equal.parquet", device=args.device,
                            detection_threshold=full_t, **equal)
        exact_run = Facecli(clip, weights, args.frames, args.batch_size, tmp / "exact.parquet", device=args.device,
                            detection_threshold=full_t, **exact)
        default_run = Facecli(clip, weights, args.frames, args.batch_size, tmp / "defaults.parquet", device=args.device,
                              detection_threshold=threshold, **defaults)
        one_run = Facecli(clip, weights, args.frames, args.batch_size, tmp / "one.parquet", device=args.device,
                          detection_threshold=one_t, **one)
        sides = [("py-feat", pyfeat.time), ("facecli equal work", equal_run.time),
                 ("facecli equal work, exact", exact_run.time), ("facecli defaults", default_run.time),
                 ("facecli defaults, max 1 face", one_run.time)]
        for k in range(args.rounds):  # the order turns every round: each side goes first, middle and last
            for name, timer in sides[k % len(sides):] + sides[: k % len(sides)]:
                result = timer()
                if result is not None:
                    rows[name].append(result)
        pyfeat.close()
        detections = None
        if rows["py-feat"]:
            reference = pd.read_csv(tmp / "pyfeat.csv")
            detections = {name: compare_detections(pd.read_parquet(tmp / f"{name}.parquet"), reference)
                          for name in ("equal", "exact")}
        for r in rows["py-feat"]:
            r["seconds"] += decode_s  # py-feat decoding, as facecli's runs include theirs
            r["decode_s"] = decode_s
    print(f"clip {args.clip or 'generated'} {frames.shape[-1]}x{frames.shape[-2]}, {args.frames} frames, "
          f"batch {args.batch_size}, device {args.device}, torch threads {args.threads}, {'given' if args.weights_dir else 'random'} weights, {args.rounds} round(s)")
    print(f"facecli defaults: detect size {defaults['detect_size'] or 'full'}, detect every {defaults['detect_every']}, "
          f"precision {defaults['precision']} ({rows['facecli defaults'][0]['precision']} here)")
    if not args.weights_dir:
        print(f"random weights: detection thresholds for about one face per frame: {full_t:.4g} on the full frame "
              f"(py-feat and facecli at equal work), {threshold:.4g} at the defaults' detect size, {one_t:.4g} "
              "with max 1 face")
    fps = {name: [r["frames"] / r["seconds"] for r in runs] for name, runs in rows.items() if runs}
    print(f"{'':<29}{'median fps':>11}{'best fps':>10}{'faces/frame':>13}{'x py-feat (median of rounds, best/best)':>42}")
    for name, runs in rows.items():
        if runs:
            f = fps[name]
            faces = runs[0]["faces"] / max(runs[0]["frames"], 1)
            ratio = ""
            if "py-feat" in fps and name != "py-feat":
                per_round = statistics.median(a / b for a, b in zip(f, fps["py-feat"]))
                ratio = f"x{per_round:.2f}, x{max(f) / max(fps['py-feat']):.2f}"
            print(f"{name:<29}{statistics.median(f):>11.3f}{max(f):>10.3f}{faces:>13.2f}{ratio:>42}")
    if detections is not None:
        for name, found in detections.items():
            print(f"equal-work ({'fp32' if name == 'equal' else 'exact'}) detections vs py-feat: {json.dumps(found)}")
    elif "py-feat" not in fps:
        print("py-feat reference environment not found: only facecli timed")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "fps": fps, "detections": detections, "defaults": defaults,
                                         "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))


if __name__ == "__main__":
    main()
