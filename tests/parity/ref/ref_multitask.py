"""Reference side of the multitask parity test (runs in the py-feat 2.1.5 environment).

Usage: ref_multitask.py CHIPS OUT_DIR WEIGHTS [WEIGHTS ...]

CHIPS is a safetensors file with tensor "chips" [N, 3, 256, 256] float32 in [0, 1]. For each
weight file, py-feat's own inference wrapper (``feat.multitask.inference.MultitaskModel``,
fp32 on CPU, no autocast) loads it from the given path (no download) and runs the chips; the
decoded outputs are written to OUT_DIR/<weights stem>.safetensors.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from feat.multitask.inference import MultitaskModel


def main() -> None:
    chips_path, out_dir, *weight_paths = sys.argv[1:]
    chips = load_file(chips_path)["chips"]
    for weights in weight_paths:
        model = MultitaskModel(device="cpu", weights_path=weights, amp=False)
        out = model(chips)
        tensors = {
            name: torch.from_numpy(getattr(out, name)).contiguous()
            for name in ("au", "emotion", "valence", "arousal", "gaze", "pose", "mesh478", "blendshapes")
        }
        save_file(tensors, str(Path(out_dir) / f"{Path(weights).stem}.safetensors"),
                  metadata={"au_names": " ".join(out.au_names), "emotion_names": " ".join(out.emotion_names)})
        print(Path(weights).stem, "ok")


if __name__ == "__main__":
    main()
