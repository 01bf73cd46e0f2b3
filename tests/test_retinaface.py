"""facecli.models.retinaface: layout, strict loading and the detector contract (no reference needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torchvision.ops import box_iou

from facecli.models.retinaface import RetinaFace, RetinaFaceDetector, load_retinaface
from facecli.models.weights import WeightsError
from tests.support.retinaface_weights import controlled_retinaface_state_dict

from tests.paths import KEYS_DIR

KEYS = KEYS_DIR / "keys_retinaface_r34.txt"


@pytest.fixture(scope="module")
def state_dict() -> dict[str, torch.Tensor]:
    return controlled_retinaface_state_dict(seed=0)


@pytest.fixture(scope="module")
def weights(state_dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rf") / "model.safetensors"
    save_file(state_dict, str(path))
    return path


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    from skimage import data

    return torch.from_numpy(np.ascontiguousarray(data.astronaut())).permute(2, 0, 1)[None].contiguous()


def test_layout_matches_published_key_list(state_dict) -> None:
    model = RetinaFace().state_dict()
    assert len(model) == len(state_dict) == 354
    assert {k: tuple(v.shape) for k, v in model.items()} == {k: tuple(v.shape) for k, v in state_dict.items()}
    # the spec's list, read off py-feat's own model
    rows = [line.split("\t") for line in KEYS.read_text().splitlines() if not line.startswith("#")]
    assert [(k, tuple(v.shape)) for k, v in model.items()] == [(r[0], eval(r[1])) for r in rows]


def test_head_shapes() -> None:
    net = RetinaFace().eval()
    with torch.inference_mode():
        loc, logits, landmarks = net(torch.zeros(2, 3, 70, 90))
    p = sum(2 * -(-70 // s) * -(-90 // s) for s in (8, 16, 32))
    assert loc.shape == (2, p, 4) and logits.shape == (2, p, 2) and landmarks.shape == (2, p, 10)


@pytest.mark.parametrize("name", ["model.safetensors", "retinaface_r34.safetensors", "anything.bin"])
def test_loads_under_any_name(state_dict, tmp_path: Path, name: str) -> None:
    save_file(state_dict, str(tmp_path / name))
    detector = load_retinaface(tmp_path / name)
    assert not detector.training
    assert torch.equal(detector.net.ClassHead._convs[2].bias, state_dict["ClassHead._convs.2.bias"])


def test_wrong_files_name_the_key(state_dict, tmp_path: Path) -> None:
    missing = {k: v for k, v in state_dict.items() if k != "ssh2.conv7x7_3.1.num_batches_tracked"}
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(WeightsError, match="ssh2.conv7x7_3.1.num_batches_tracked"):
        load_retinaface(tmp_path / "missing.safetensors")

    extra = {**state_dict, "fc.weight": torch.zeros(2, 2)}
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(WeightsError, match="fc.weight"):
        load_retinaface(tmp_path / "extra.safetensors")

    reshaped = {**state_dict, "BboxHead._convs.0.weight": torch.zeros(8, 64, 1, 1)}
    save_file(reshaped, str(tmp_path / "shape.safetensors"))
    with pytest.raises(WeightsError, match="BboxHead._convs.0.weight"):
        load_retinaface(tmp_path / "shape.safetensors")

    with pytest.raises(WeightsError, match="not found"):
        load_retinaface(tmp_path / "absent.safetensors")


def test_detections_contract(weights: Path, astronaut: torch.Tensor) -> None:
    detector = load_retinaface(weights)
    frames = torch.cat([astronaut, astronaut.flip(-1)])
    dets = detector.detect(frames, threshold=0.5)
    n = len(dets)
    assert n > 0
    assert dets.boxes.shape == (n, 4) and dets.boxes.dtype == torch.float32
    assert dets.landmarks.shape == (n, 5, 2) and dets.scores.shape == (n,)
    assert dets.frame.dtype == torch.int64 and set(dets.frame.tolist()) <= {0, 1}
    assert torch.all(dets.frame[1:] >= dets.frame[:-1])
    assert torch.all(dets.scores >= 0.5) and torch.all(dets.scores <= 1)
    for b in range(2):
        mine = dets.frame == b
        assert int(mine.sum()) > 0
        assert torch.all(dets.scores[mine][1:] <= dets.scores[mine][:-1])  # best first
        iou = box_iou(dets.boxes[mine], dets.boxes[mine]).fill_diagonal_(0)
        assert float(iou.max()) <= 0.4
    assert torch.all(dets.boxes[:, 2:] > dets.boxes[:, :2])

    # each image alone gives the same faces as in the batch
    single = detector.detect(astronaut, threshold=0.5)
    in_batch = dets.frame == 0
    assert len(single) == int(in_batch.sum())
    assert torch.allclose(single.boxes, dets.boxes[in_batch], atol=1e-3)
    assert torch.allclose(single.landmarks, dets.landmarks[in_batch], atol=1e-3)

    # uint8 and float input are the same; a higher threshold keeps a prefix of each frame's list
    as_float = detector.detect(astronaut.float(), threshold=0.5)
    assert torch.equal(as_float.boxes, single.boxes)
    strict = detector.detect(astronaut, threshold=float(single.scores.median()))
    assert 0 < len(strict) <= len(single)
    assert torch.equal(strict.boxes, single.boxes[: len(strict)])


def test_no_faces_and_cap(weights: Path, astronaut: torch.Tensor) -> None:
    detector = load_retinaface(weights)
    none = detector.detect(astronaut, threshold=1.01)
    assert len(none) == 0 and none.landmarks.shape == (0, 5, 2) and none.frame.dtype == torch.int64
    capped = RetinaFaceDetector(detector.net, max_per_image=1).eval().detect(astronaut)
    assert len(capped) == 1


def test_rejects_bad_frames(weights: Path) -> None:
    detector = load_retinaface(weights)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        detector.detect(torch.zeros(3, 32, 32, dtype=torch.uint8))


def test_priors_follow_module_device(weights: Path) -> None:
    detector = load_retinaface(weights)
    priors = detector.priors(64, 96)
    assert priors.device == detector.mean.device
    assert detector.priors(64, 96) is priors  # cached per (H, W, device)
    if torch.cuda.is_available():
        detector = detector.to("cuda")
        assert detector.priors(64, 96).device.type == "cuda"
