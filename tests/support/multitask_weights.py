"""Random feat-v2 multitask weight files in the published layout, and key-list checks.

``write_random_multitask`` builds facecli's own model from a config dict, gives every tensor
non-trivial random values (so BatchNorm statistics, LayerNorm/GRN affines and biases all
matter in parity tests) and saves it like the published ``face_multitask_v28.safetensors``:
tensors under their state-dict names, the config as JSON under metadata key ``"config"``.

``read_key_list`` parses the spec key lists (``name<TAB>(shape)<TAB>dtype`` lines after ``#``
header lines); ``model_key_table`` gives the same table for a model, for exact comparison.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from facecli.models.multitask import FaceMultitaskV2, MultitaskConfig

# Config of the v2.5-style key list (keys_multitask_v25style.txt header).
V25_CONFIG: dict = {
    "n_au": 20,
    "n_emotion": 7,
    "n_blendshape": 52,
    "mesh_normalized": True,
    "use_head_v3": True,
    "drop_mefl": True,
    "emotion_use_au_prob": True,
    "pretrained": False,
}
# Config of the v2.8 hypothesis key list (keys_multitask_v28_hypothesis.txt header).
V28_CONFIG: dict = {**V25_CONFIG, "gaze_eye_roi": True, "gaze_pose_6d": True, "gaze_bins": 180}

from tests.paths import KEYS_DIR as SPEC_KEYS_DIR  # noqa: E402,F401  (the spec's key lists, in tests/data)
KEY_LISTS = {"v25": "keys_multitask_v25style.txt", "v28": "keys_multitask_v28_hypothesis.txt"}

KeyTable = dict[str, tuple[tuple[int, ...], str]]


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and float buffer random, numerically tame values, in place.

    Weights are perturbed around their default initialisation; norm scales around 1;
    BatchNorm running statistics are random (variance in [0.5, 1.5]); mesh output biases put
    x, y inside the chip so eye boxes land on the feature map.
    """
    generator = torch.Generator().manual_seed(seed)

    def noise(t: torch.Tensor, scale: float) -> torch.Tensor:
        return torch.randn(t.shape, generator=generator, dtype=t.dtype) * scale

    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            continue
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "running_var":
            tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
        elif leaf == "running_mean" or leaf == "bias":
            tensor.copy_(noise(tensor, 0.05))
        elif tensor.ndim <= 1 and leaf == "weight":  # norm scales (LayerNorm, BatchNorm, GRN, GroupNorm)
            base = 0.0 if ".grn." in name else 1.0
            tensor.copy_(base + noise(tensor, 0.1))
        else:
            tensor.add_(noise(tensor, 0.2 * float(tensor.std()) if tensor.numel() > 1 else 0.1))
    mesh_bias = getattr(getattr(model, "lmk", None), "mlp", None)
    if mesh_bias is not None:
        bias = mesh_bias[-1].bias.view(-1, 3)
        bias[:, :2] = 0.3 + 0.4 * torch.rand(bias[:, :2].shape, generator=generator)
    return model


def write_random_multitask(path: str | Path, config: dict, seed: int = 0) -> Path:
    """Write a random-weight multitask file in the published layout.

    Args:
        path: output ``.safetensors`` path.
        config: the model config as it appears in the file's metadata.
        seed: random seed.

    Returns:
        The path written.
    """
    torch.manual_seed(seed)
    model = randomize_(FaceMultitaskV2(MultitaskConfig.from_metadata(config)), seed)
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"config": json.dumps(config)})
    return Path(path)


def read_key_list(path: str | Path) -> tuple[dict, KeyTable]:
    """Parse a spec key list.

    Returns:
        (config dict from the header, {name: (shape, dtype)}).
    """
    lines = Path(path).read_text().splitlines()
    match = re.search(r"\(\*\*(\{.*\})\)\)", lines[0])
    config = json.loads(match.group(1)) if match else {}
    table: KeyTable = {}
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        name, shape, dtype = line.split("\t")
        table[name] = (tuple(int(n) for n in re.findall(r"\d+", shape)), dtype)
    return config, table


def model_key_table(model: nn.Module) -> KeyTable:
    """{state-dict name: (shape, dtype name)} of a model, dtype as in the key lists (``float32``)."""
    return {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()}
