"""facecli feat-v2 vs py-feat 2.1.5 Detectorv2, side by side on one clip with the same weights.

    PYTHONPATH=. python benchmarks/compare_pyfeat.py [CLIP] [--frames 30] [--size 1280x720]
        [--batch-size 1] [--threads 2] [--rounds 1] [--weights-dir DIR] [--json out.json]

One run times, in turn (``--rounds`` times, alternating, so load from other work on a shared
machine falls on every side alike):

* py-feat 2.1.5 ``Detectorv2.detect(frames, data_type="tensor")`` (fp32, its default), in the
  interpreter named by ``$FACECLI_PYFEAT_PYTHON`` or ``.ref/bin/python``, on the clip's frames;
  its environment has no video reader, so the frames are decoded here with PyAV and the time
  that decoding takes (measured in this run) is added to py-feat's: both sides include decoding;
* facecli at equal work: ``--detect-size full --detect-every 1 --precision fp32`` (what py-feat
  computes), through the real engine (``facecli video`` from the file to Parquet);
* facecli at its defaults (``facecli video``'s own defaults: detect size, detect every, precision).

Both use the same weights: ``--weights-dir`` or random weights in the published layouts with
the detector calibrated on the clip (so faces are found; compute is that of the real files).
Each side has one untimed warm-up batch. At equal work the detections are compared row by row
(boxes and scores, frame by frame) and the largest difference is printed: "identical" means
every face of both within 1e-3 pixel / 1e-4 score.

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


def time_pyfeat(frames_npy: Path, weights: Path, batch: int, threads: int, out_csv: Path) -> dict | None:
    python = os.environ.get("FACECLI_PYFEAT_PYTHON") or str(REPO / ".ref" / "bin" / "python")
    if not Path(python).exists():
        return None
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "tests" / "parity" / "ref")}
    out = subprocess.run([python, str(HELPER), str(frames_npy), str(weights), str(batch), "cpu", str(threads),
                          str(out_csv)], capture_output=True, text=True, env=env, timeout=7200)
    if out.returncode != 0:
        print(f"py-feat run failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_facecli(clip: Path, weights: Path, frames: int, batch: int, out: Path, **settings) -> dict:
    from facecli.config import RunConfig
    from facecli.models.sets import build_model_set
    from facecli.pipeline.engine import run
    from facecli.pipeline.report import Reporter

    config = RunConfig(inputs=(str(clip),), output=out, kind="video", models="feat-v2", weights_dir=weights,
                       device="cpu", batch_size=batch, max_frames=frames, quiet=True, **settings).validate()
    model_set, hashes = build_model_set(config, print)
    run(replace(config, output=out.with_name("warmup.parquet"), max_frames=batch), model_set, Reporter(quiet=True), hashes)
    start = time.perf_counter()
    summary = run(config, model_set, Reporter(quiet=True), hashes)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "frames": summary.frames, "faces": summary.faces, "precision": model_set.info.precision}


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
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--size", default="1280x720", help="WxH of the generated clip")
    parser.add_argument("--batch-size", type=int, default=1, help="frames per batch, both sides")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--weights-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from facecli.bench import random_weights_dir
    from facecli.bench.clip import make_clip

    defaults = cli_defaults()
    equal = {"detect_size": None, "detect_every": 1, "precision": "fp32"}
    rows: dict[str, list[dict]] = {"py-feat": [], "facecli equal work": [], "facecli defaults": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        width, height = (int(v) for v in args.size.split("x"))
        clip = args.clip or make_clip(tmp / "clip.mp4", args.frames, width, height)
        weights = args.weights_dir or random_weights_dir(clip, tmp, "arcface")
        frames, _ = decode(clip, args.frames)
        np.save(tmp / "frames.npy", frames.numpy())
        detections = None
        for k in range(args.rounds):
            _, decode_s = decode(clip, args.frames)  # py-feat's decoding, timed in this round
            ref = time_pyfeat(tmp / "frames.npy", weights, args.batch_size, args.threads, tmp / "pyfeat.csv")
            if ref is not None:
                rows["py-feat"].append({**ref, "seconds": ref["seconds"] + decode_s, "decode_s": decode_s})
            rows["facecli equal work"].append(
                time_facecli(clip, weights, args.frames, args.batch_size, tmp / "equal.parquet", **equal))
            rows["facecli defaults"].append(
                time_facecli(clip, weights, args.frames, args.batch_size, tmp / "defaults.parquet", **defaults))
            if k == 0 and ref is not None:
                detections = compare_detections(pd.read_parquet(tmp / "equal.parquet"), pd.read_csv(tmp / "pyfeat.csv"))
    print(f"clip {args.clip or 'generated'} {width}x{height}, {args.frames} frames, batch {args.batch_size}, "
          f"torch threads {args.threads}, {'given' if args.weights_dir else 'random'} weights, {args.rounds} round(s)")
    print(f"facecli defaults: detect size {defaults['detect_size'] or 'full'}, detect every {defaults['detect_every']}, "
          f"precision {defaults['precision']} ({rows['facecli defaults'][0]['precision']} here)")
    fps = {name: [r["frames"] / r["seconds"] for r in runs] for name, runs in rows.items() if runs}
    for name, runs in rows.items():
        if runs:
            f = fps[name]
            faces = runs[0]["faces"] / max(runs[0]["frames"], 1)
            ratio = ""
            if "py-feat" in fps and name != "py-feat":
                ratio = f"  x{statistics.median(a / b for a, b in zip(f, fps['py-feat'])):.2f} py-feat"
            print(f"{name:<20}{statistics.median(f):>8.3f} frames/s  {faces:.2f} faces/frame{ratio}")
    if detections is not None:
        print(f"equal-work detections vs py-feat: {json.dumps(detections)}")
    elif "py-feat" not in fps:
        print("py-feat reference environment not found: only facecli timed")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "fps": fps, "detections": detections, "defaults": defaults,
                                         "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))


if __name__ == "__main__":
    main()
