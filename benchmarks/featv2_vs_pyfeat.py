"""facecli's feat-v2 pipeline vs py-feat 2.1.5's Detectorv2 on the same clip and the same weights.

    .venv/bin/python benchmarks/featv2_vs_pyfeat.py [CLIP] [--weights-dir DIR] [--batch-size 8]
        [--device cpu] [--detect-size full] [--threads 2]

Both sides are timed in this one run on the same device, model loading excluded, each after an
untimed warm-up pass:

* facecli: ``facecli.pipeline.engine.run`` from the video file to Parquet in a temporary folder
  (decoding and writing included).
* py-feat: ``Detectorv2.detect(frames, data_type="tensor")`` on the clip's frames decoded up front
  (its own video reader needs torchcodec's FFmpeg libraries, which are not on every machine), in
  the interpreter named by ``$FACECLI_PYFEAT_PYTHON`` or ``.ref/bin/python`` (``make ref-envs``),
  fp32, no progress bar. Decoding is not counted on this side, so the ratio favours py-feat.

Without ``--weights-dir`` both load random weights in the published layouts written by the test
helpers (``tests/support``), with RetinaFace calibrated on the clip's own frames so that faces
are found: the compute is the same as with the real files except that the number of faces
follows the random detector (reported as faces per frame for both sides).
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
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO / "examples" / "astronaut.mp4"
HELPER = Path(__file__).resolve().with_name("pyfeat_detect_timing.py")


def decode(clip: Path) -> torch.Tensor:
    """All frames of ``clip`` as Tensor[N, 3, H, W] uint8 RGB."""
    from facecli.io.video import iter_video_batches

    return torch.cat([batch.images for batch in iter_video_batches(clip, batch_size=16)])


def random_weights(root: Path, frames: torch.Tensor) -> Path:
    """Write random feat-v2 weights laid out as ROOT/<repo_id>/<filename>."""
    sys.path.insert(0, str(REPO))
    from tests.support.identity_weights import write_random_arcface
    from tests.support.multitask_weights import V28_CONFIG, write_random_multitask
    from tests.support.retinaface_weights import write_controlled_retinaface

    for sub in ("retinaface_r34", "face_multitask_v2", "arcface_r50"):
        (root / "py-feat" / sub).mkdir(parents=True, exist_ok=True)
    calibration = [frames[i : i + 1].float() for i in range(0, len(frames), max(1, len(frames) // 4))]
    write_controlled_retinaface(
        root / "py-feat/retinaface_r34/model.safetensors", seed=0, n_faces_hint=2, calibration=calibration
    )
    write_random_multitask(root / "py-feat/face_multitask_v2/face_multitask_v28.safetensors", V28_CONFIG, seed=0)
    write_random_arcface(root / "py-feat/arcface_r50/arcface_r50.safetensors", seed=0)
    return root


def time_facecli(clip: Path, weights: Path, batch_size: int, device: str, detect_size: str) -> dict:
    from facecli.config import RunConfig, parse_detect_size
    from facecli.models.sets import build_model_set
    from facecli.pipeline.engine import run
    from facecli.pipeline.report import Reporter

    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(
            inputs=(str(clip),), output=Path(tmp) / "out.parquet", kind="video", models="feat-v2",
            weights_dir=weights, device=device, batch_size=batch_size, detect_size=parse_detect_size(detect_size),
            quiet=True,
        ).validate()
        model_set, hashes = build_model_set(config, print)
        run(config, model_set, Reporter(quiet=True), hashes)  # warm-up pass
        start = time.perf_counter()
        summary = run(config, model_set, Reporter(quiet=True), hashes)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "frames": summary.frames, "faces": summary.faces}


def time_pyfeat(frames: torch.Tensor, weights: Path, batch_size: int, device: str) -> dict | None:
    python = os.environ.get("FACECLI_PYFEAT_PYTHON") or str(REPO / ".ref" / "bin" / "python")
    if not Path(python).exists():
        return None
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "tests" / "parity" / "ref")}
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "frames.npy", frames.numpy())
        out = subprocess.run(
            [python, str(HELPER), str(Path(tmp) / "frames.npy"), str(weights), str(batch_size), device,
             str(torch.get_num_threads())],
            capture_output=True, text=True, env=env, timeout=3600,
        )
    if out.returncode != 0:
        print(f"py-feat run failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--weights-dir", type=Path, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--detect-size", default="full")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = decode(args.clip)
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights_dir or random_weights(Path(tmp) / "weights", frames)
        ours = time_facecli(args.clip, weights, args.batch_size, args.device, args.detect_size)
        ref = time_pyfeat(frames, weights, args.batch_size, args.device)
    print(f"clip {args.clip}, device {args.device}, batch {args.batch_size}, torch threads {args.threads}, "
          f"{'given' if args.weights_dir else 'random'} weights, detect size {args.detect_size}")
    rows = [("facecli feat-v2 (from file)", ours)] + ([("py-feat 2.1.5 (decoded)", ref)] if ref else [])
    for name, r in rows:
        print(f"{name:<26}{r['frames'] / r['seconds']:>8.2f} frames/s  {r['faces'] / max(r['frames'], 1):.2f} faces/frame")
    if ref:
        print(f"facecli / py-feat speed ratio: {(ours['frames'] / ours['seconds']) / (ref['frames'] / ref['seconds']):.2f}")
    else:
        print("py-feat reference environment not found: only facecli timed")


if __name__ == "__main__":
    main()
