"""RetinaFace-R34: facecli against py-feat 2.1.5 on the same random weights, fp32 on CPU.

The weights are random but tamed (tests/support/retinaface_weights.py) and calibrated on the
test frames, so every case yields a few detections after NMS and hundreds of NMS candidates.
Checked per case: priors (exact), the raw heads, every decoded anchor, and the final detections
(count, order, boxes, scores, landmarks) of py-feat's ``Retinaface`` detector class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from facecli.models.retinaface import RetinaFaceDetector, load_retinaface
from facecli.ops.boxes import decode_boxes, decode_landmarks
from facecli.types import Detections
from tests.parity.conftest import run_reference
from tests.support.retinaface_weights import write_controlled_retinaface


@dataclass(frozen=True)
class Case:
    frames: torch.Tensor  # [B, 3, H, W] uint8
    top_k: int = 5000
    keep_top_k: int = 750


def _cases() -> dict[str, Case]:
    from skimage import data

    astronaut = torch.from_numpy(np.ascontiguousarray(data.astronaut())).permute(2, 0, 1).contiguous()
    camera = torch.from_numpy(data.camera())[None].expand(3, -1, -1).contiguous()
    small = torch.stack([astronaut[:, ::2, ::2], camera[:, ::2, ::2]]).contiguous()
    return {
        "astronaut": Case(astronaut[None]),
        "grey": Case(camera[None]),
        "odd": Case(astronaut[:, :217, 100:401][None].contiguous()),  # H 217, W 301
        "batch": Case(small),
        "capped": Case(small, top_k=40, keep_top_k=2),  # exercises top-k and the per-image cap
    }


@pytest.fixture(scope="module")
def parity(pyfeat_python: str, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("retinaface")
    cases = _cases()
    calibration = [
        c.frames[i : i + 1].float() for n, c in cases.items() if n != "capped" for i in range(len(c.frames))
    ]
    weights = write_controlled_retinaface(
        tmp / "model.safetensors", seed=3, n_faces_hint=4, calibration=calibration
    )
    tensors = {}
    for name, case in cases.items():
        tensors[f"frames/{name}"] = case.frames.contiguous().clone()
        tensors[f"options/{name}"] = torch.tensor([case.top_k, case.keep_top_k])
    save_file(tensors, str(tmp / "cases.safetensors"))
    run_reference(
        pyfeat_python, "ref_retinaface.py", weights, tmp / "cases.safetensors", tmp / "ref.safetensors"
    )
    return cases, load_retinaface(weights), load_file(str(tmp / "ref.safetensors"))


def _scaled(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """Max abs difference relative to the reference's magnitude (at least 1)."""
    return float((ours - ref).abs().max() / ref.abs().max().clamp_min(1.0))


@pytest.mark.parametrize("name", ["astronaut", "grey", "odd", "batch"])
def test_heads_match(parity, name: str) -> None:
    cases, detector, ref = parity
    frames = cases[name].frames
    with torch.inference_mode():
        loc, logits, landmarks = detector.net(detector.preprocess(frames))
    assert loc.shape == ref[f"{name}/loc"].shape
    assert _scaled(loc, ref[f"{name}/loc"]) < 1e-4
    assert _scaled(logits, ref[f"{name}/logits"]) < 1e-4
    assert _scaled(landmarks, ref[f"{name}/landmarks"]) < 1e-4
    assert float((logits.softmax(-1) - ref[f"{name}/conf"]).abs().max()) < 1e-5

    height, width = frames.shape[-2:]
    priors = detector.priors(height, width)
    assert torch.equal(priors, ref[f"{name}/priors"])  # vectorised priors == the reference loop
    scale = torch.tensor([width, height], dtype=torch.float32)
    boxes_px = decode_boxes(ref[f"{name}/loc"], priors) * scale.repeat(2)
    points_px = decode_landmarks(ref[f"{name}/landmarks"], priors) * scale
    assert torch.equal(boxes_px, ref[f"{name}/boxes_px"])  # same operation order: bit-identical
    assert torch.equal(points_px.flatten(-2), ref[f"{name}/points_px"])


def _anchor_of(dets: Detections, ref_boxes: torch.Tensor) -> torch.Tensor:
    """Index of the reference anchor whose decoded box is each detection's box, Tensor[N]."""
    diff = (ref_boxes[dets.frame] - dets.boxes[:, None, :]).abs().amax(-1)  # [N, P]
    best = diff.min(dim=1)
    assert float(best.values.max()) < 1e-3
    return best.indices


@pytest.mark.parametrize("name", ["astronaut", "grey", "odd", "batch", "capped"])
def test_detections_match(parity, name: str) -> None:
    cases, detector, ref = parity
    case = cases[name]
    detector = RetinaFaceDetector(detector.net, top_k=case.top_k, max_per_image=case.keep_top_k)
    dets = detector.detect(case.frames, threshold=0.5)
    ref_det, ref_frame = ref[f"{name}/det"], ref[f"{name}/det_frame"]

    assert len(dets) > 0
    assert torch.equal(dets.frame, ref_frame)  # same count per frame, frames ascending
    assert float((dets.boxes - ref_det[:, :4]).abs().max()) < 1e-3  # pixels, same order
    assert float((dets.scores - ref_det[:, 4]).abs().max()) < 1e-5
    assert dets.landmarks.shape == (len(dets), 5, 2)
    anchor = _anchor_of(dets, ref[f"{name}/boxes_px"])
    ref_points = ref[f"{name}/points_px"][dets.frame, anchor].view(-1, 5, 2)
    assert float((dets.landmarks - ref_points).abs().max()) < 1e-3
    if name == "capped":
        assert torch.bincount(dets.frame).max() == 2
