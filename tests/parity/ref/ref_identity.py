"""Reference side of the identity parity test (runs in the py-feat 2.1.5 environment).

Usage: ref_identity.py {arcface|facenet} WEIGHTS CHIPS_IN EMB_OUT

Builds the identity detector through py-feat's own loader functions (the ones Detectorv2
calls), pointing them at the random weight file the test wrote instead of the Hub, runs
``identity_detector.forward(chips)`` on the 256x256 chips in CHIPS_IN (safetensors key
"chips", float32 [N, 3, 256, 256] in [0, 1]) and writes key "embeddings" to EMB_OUT.
Nothing is downloaded.
"""

from __future__ import annotations

import os
import sys

import huggingface_hub
import torch
from safetensors.torch import load_file, save_file


def build(kind: str, weights: str) -> torch.nn.Module:
    if kind == "arcface":
        os.environ["FEAT_ARCFACE_R50_PATH"] = weights  # py-feat's own override of the Hub path
        from feat.identity_detectors.arcface.arcface_model import load_arcface_identity_detector

        return load_arcface_identity_detector("cpu")
    if kind == "facenet":
        # the loader imports hf_hub_download at call time: answer it with the local file
        huggingface_hub.hf_hub_download = lambda *args, **kwargs: weights
        from feat.identity_detectors.facenet.facenet_model import load_facenet_identity_detector

        return load_facenet_identity_detector("cpu")
    raise SystemExit(f"unknown identity model {kind!r}")


def main() -> None:
    kind, weights, chips_in, emb_out = sys.argv[1:5]
    torch.set_num_threads(1)
    detector = build(kind, weights)
    chips = load_file(chips_in)["chips"]
    with torch.inference_mode():  # as Detectorv2.forward runs it
        embeddings = detector.forward(chips)
    save_file({"embeddings": embeddings.float().contiguous()}, emb_out)


if __name__ == "__main__":
    main()
