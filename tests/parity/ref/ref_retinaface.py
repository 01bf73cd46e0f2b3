"""Reference side of the RetinaFace parity test (runs in the py-feat 2.1.5 environment).

Usage: ref_retinaface.py WEIGHTS CASES_IN RESULTS_OUT

Builds py-feat's ``Retinaface`` detector (the class Detectorv2 uses) through its own
Hub-loading code path, with the download helper answered by the local WEIGHTS file, so its
strict ``load_state_dict`` checks the file. Nothing is downloaded.

CASES_IN (safetensors) holds, per case NAME: ``frames/NAME`` uint8 [B, 3, H, W] RGB and
``options/NAME`` int64 [top_k, keep_top_k]. RESULTS_OUT (safetensors) receives per case:

- ``NAME/loc`` [B, P, 4], ``NAME/logits`` [B, P, 2], ``NAME/conf`` [B, P, 2] (softmax),
  ``NAME/landmarks`` [B, P, 10]: the network heads on the mean-subtracted frames;
- ``NAME/boxes_px`` [B, P, 4] and ``NAME/points_px`` [B, P, 10]: every anchor decoded by
  py-feat's functions and scaled to pixels;
- ``NAME/det`` [N, 5] (x1, y1, x2, y2, score) and ``NAME/det_frame`` [N]: the detector's
  output lists flattened in order.
"""

from __future__ import annotations

import sys

import torch
from safetensors.torch import load_file, save_file


def build_detector(weights: str, top_k: int, keep_top_k: int):
    import feat.utils

    feat.utils.hf_hub_download_with_fallback = lambda *args, **kwargs: weights
    from feat.face_detectors.Retinaface.Retinaface_test import Retinaface

    return Retinaface(device="cpu", top_k=top_k, keep_top_k=keep_top_k)


def run_case(detector, frames: torch.Tensor, name: str) -> dict[str, torch.Tensor]:
    from feat.face_detectors.Retinaface import Retinaface_model as rm

    captured: dict[str, torch.Tensor] = {}
    hook = detector.net.ClassHead.register_forward_hook(
        lambda module, args, output: captured.__setitem__("logits", output.clone())
    )
    x = frames.float() - torch.tensor([123.0, 117.0, 104.0]).view(1, 3, 1, 1)
    loc, conf, landmarks = detector.net(x)
    hook.remove()

    height, width = frames.shape[-2:]
    priors = detector._get_priors(height, width)
    variance = detector.cfg["variance"]
    scale = torch.tensor([width, height], dtype=torch.float32)
    boxes_px = rm.decode_boxes(loc, priors, variance) * scale.repeat(2)
    points_px = rm.decode_landmarks(landmarks, priors, variance) * scale.repeat(5)

    per_image = detector(frames)  # list over images of [x1, y1, x2, y2, score] lists
    det = [row for rows in per_image for row in rows]
    det_frame = [b for b, rows in enumerate(per_image) for _ in rows]
    return {
        f"{name}/loc": loc,
        f"{name}/logits": captured["logits"],
        f"{name}/conf": conf,
        f"{name}/landmarks": landmarks,
        f"{name}/priors": priors,
        f"{name}/boxes_px": boxes_px,
        f"{name}/points_px": points_px,
        f"{name}/det": torch.tensor(det, dtype=torch.float32).reshape(-1, 5),
        f"{name}/det_frame": torch.tensor(det_frame, dtype=torch.int64),
    }


def main() -> None:
    weights, cases_in, results_out = sys.argv[1:4]
    torch.set_num_threads(1)
    cases = load_file(cases_in)
    results: dict[str, torch.Tensor] = {}
    names = sorted(k.split("/", 1)[1] for k in cases if k.startswith("frames/"))
    with torch.inference_mode():
        for name in names:
            top_k, keep_top_k = (int(v) for v in cases[f"options/{name}"])
            detector = build_detector(weights, top_k, keep_top_k)
            results.update(run_case(detector, cases[f"frames/{name}"], name))
    save_file({k: v.contiguous() for k, v in results.items()}, results_out)


if __name__ == "__main__":
    main()
