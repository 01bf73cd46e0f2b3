"""What the fast settings cost in accuracy: each setting against detecting on every frame.

    PYTHONPATH=. python benchmarks/follow_accuracy.py CLIP... [--models lite] [--every 2 5 10]
        [--detect-size full] [--precision fp32] [--frames 300] [--json out.json]
        [--baseline-size full] [--baseline-precision fp32] [--max-faces 1]

For every clip, ``facecli video`` (the real engine) runs once with the baseline settings
(``--detect-every 1``, the baseline detect size and precision) and once per compared setting
(each ``--every`` K, and each K again with ``--max-faces N`` when it is given);
rows of the same frame are matched one-to-one by box IoU (Hungarian) and compared:

* faces: baseline faces found (recall) and extra faces (not in the baseline);
* box IoU of matched faces (mean, 5th percentile);
* mesh: mean distance of the 478 points, in % of the inter-ocular distance (outer eye
  corners) of the baseline face (mean, 95th percentile), and the same for the 68 landmarks;
* pose: largest of |dPitch|, |dYaw|, |dRoll| in degrees (mean, 95th percentile);
* AUs and emotions: mean absolute difference of the probabilities (mean, largest);
* identity: cosine between the embeddings (mean, 5th percentile).

Prints one table per clip (markdown) and writes every figure to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment


def run_video(clip: Path, out: Path, base, **settings) -> tuple[pd.DataFrame, float]:
    from facecli.models.sets import build_model_set
    from facecli.pipeline.engine import run
    from facecli.pipeline.report import Reporter

    config = replace(base, inputs=(str(clip),), output=out, **settings).validate()
    model_set, hashes = build_model_set(config, print)
    start = time.perf_counter()
    summary = run(config, model_set, Reporter(quiet=True), hashes)
    seconds = time.perf_counter() - start
    if summary.inputs_failed:
        raise SystemExit(f"{clip}: {summary.errors}")
    return pd.read_parquet(out), seconds


def _boxes(df: pd.DataFrame) -> np.ndarray:
    x, y, w, h = (df[c].to_numpy() for c in ("FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight"))
    return np.stack([x, y, x + w, y + h], axis=1)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def match(base: pd.DataFrame, other: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, int, int]:
    """Matched rows (same order) of both tables, faces in the baseline, extra faces in ``other``."""
    base = base[base["FaceScore"] > 0]
    other = other[other["FaceScore"] > 0]
    a_rows, b_rows = [], []
    extra = 0
    groups = dict(tuple(other.groupby("frame")))
    for frame, a in base.groupby("frame"):
        b = groups.pop(frame, None)
        if b is None:
            continue
        iou = _iou(_boxes(a), _boxes(b))
        r, c = linear_sum_assignment(-iou)
        keep = iou[r, c] > 0.1
        a_rows += list(a.index[r[keep]])
        b_rows += list(b.index[c[keep]])
        extra += len(b) - int(keep.sum())
    extra += sum(len(g) for g in groups.values())
    return base.loc[a_rows], other.loc[b_rows], len(base), extra


def compare(base: pd.DataFrame, other: pd.DataFrame) -> dict:
    a, b, n_base, extra = match(base, other)
    out: dict = {"baseline_faces": n_base, "recall": len(a) / max(n_base, 1), "extra_faces": extra}
    if not len(a):
        return out
    iou = np.diag(_iou(_boxes(a), _boxes(b))) if len(a) < 2000 else np.array(
        [_iou(_boxes(a.iloc[[k]]), _boxes(b.iloc[[k]]))[0, 0] for k in range(len(a))])
    out["box_iou_mean"], out["box_iou_p5"] = float(iou.mean()), float(np.percentile(iou, 5))
    mx = [c for c in a.columns if c.startswith("mesh_x_")]
    my = [c for c in a.columns if c.startswith("mesh_y_")]
    ax, ay, bx, by = (d[c].to_numpy() for d, c in ((a, mx), (a, my), (b, mx), (b, my)))
    iod = np.hypot(ax[:, 263] - ax[:, 33], ay[:, 263] - ay[:, 33])
    ok = np.isfinite(iod) & (iod > 0) & np.isfinite(bx).all(1)
    dist = np.hypot(ax - bx, ay - by).mean(axis=1)[ok] / iod[ok] * 100
    out["mesh_dev_pct_iod_mean"] = float(dist.mean()) if len(dist) else None
    out["mesh_dev_pct_iod_p95"] = float(np.percentile(dist, 95)) if len(dist) else None
    lx = [f"x_{i}" for i in range(68)]
    ly = [f"y_{i}" for i in range(68)]
    d68 = np.hypot(a[lx].to_numpy() - b[lx].to_numpy(), a[ly].to_numpy() - b[ly].to_numpy()).mean(axis=1)[ok] / iod[ok] * 100
    out["landmarks68_dev_pct_iod_mean"] = float(d68.mean()) if len(d68) else None
    pose = np.degrees(np.abs(a[["Pitch", "Yaw", "Roll"]].to_numpy() - b[["Pitch", "Yaw", "Roll"]].to_numpy())).max(axis=1)
    pose = pose[np.isfinite(pose)]
    if len(pose):
        out["pose_dev_deg_mean"], out["pose_dev_deg_p95"] = float(pose.mean()), float(np.percentile(pose, 95))
    emotions = [c for c in ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt") if c in a]
    for name, cols in (("emotion", emotions), ("au", [c for c in a.columns if c.startswith("AU")])):
        if cols:
            diff = np.abs(a[cols].to_numpy() - b[cols].to_numpy())
            diff = diff[np.isfinite(diff).all(1)]
            if len(diff):
                out[f"{name}_mae"], out[f"{name}_max"] = float(diff.mean()), float(diff.max())
    ids = [c for c in a.columns if c.startswith("Identity_")]
    if ids:
        ea, eb = a[ids].to_numpy(), b[ids].to_numpy()
        cos = (ea * eb).sum(1) / (np.linalg.norm(ea, axis=1) * np.linalg.norm(eb, axis=1) + 1e-12)
        cos = cos[np.isfinite(cos)]
        if len(cos):
            out["identity_cos_mean"], out["identity_cos_p5"] = float(cos.mean()), float(np.percentile(cos, 5))
    return out


def main() -> None:
    from facecli.config import RunConfig, parse_detect_size

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="+", type=Path)
    parser.add_argument("--models", default="lite")
    parser.add_argument("--weights-dir", type=Path, default=None)
    parser.add_argument("--every", type=int, nargs="+", default=[2, 5, 10])
    parser.add_argument("--detect-size", default="full", help="detect size of the compared settings")
    parser.add_argument("--precision", default="fp32", help="precision of the compared settings")
    parser.add_argument("--baseline-size", default="full")
    parser.add_argument("--baseline-precision", default="fp32")
    parser.add_argument("--frames", type=int, default=None, help="first N frames of each clip")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-faces", type=int, default=None, help="also compare each K with --max-faces N")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    base = RunConfig(inputs=(), output=Path("x.parquet"), kind="video", models=args.models, device="cpu",
                     weights_dir=args.weights_dir, batch_size=args.batch_size, max_frames=args.frames, quiet=True)
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for clip in args.clips:
            ref, ref_s = run_video(clip, Path(tmp) / "base.parquet", base, detect_every=1,
                                   detect_size=parse_detect_size(args.baseline_size), precision=args.baseline_precision)
            rows = {}
            variants = [(every, None) for every in args.every]
            variants += [(every, args.max_faces) for every in args.every] if args.max_faces else []
            for every, most in variants:
                df, secs = run_video(clip, Path(tmp) / f"k{every}-{most}.parquet", base, detect_every=every,
                                     detect_size=parse_detect_size(args.detect_size), precision=args.precision,
                                     max_faces=most)
                name = f"every {every}" + (f", max faces {most}" if most else "")
                rows[name] = {**compare(ref, df), "speedup": ref_s / secs}
            report[str(clip)] = rows
            frame = pd.DataFrame(rows).T
            print(f"\n{clip.name}: {ref['frame'].nunique()} frames, baseline detect every 1, size {args.baseline_size}, "
                  f"{args.baseline_precision}; compared: size {args.detect_size}, {args.precision}")
            print(frame.to_markdown(floatfmt=".3g"))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
