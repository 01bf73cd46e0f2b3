"""Convert MediaPipe's face_landmark.tflite into facemesh.safetensors (FaceMeshNet layout).

The .tflite layer names (``conv2d_N``, ``depthwise_conv2d_N``, ``p_re_lu_N``) are mapped to
:class:`facecli.models.lite.facemesh.FaceMeshNet` keys by a fixed table; every layer of the file
must be used exactly once and every model key filled, and the operator graph is checked against
the table (each mapped pointwise conv must consume the mapped depthwise conv's output).

Run as a step of ``scripts/convert_lite.py`` (step ``facemesh``) or on its own, from the repository root::

    python -m scripts.lite_convert.facemesh [SOURCE.tflite] [OUT.safetensors]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .safetensors_io import write_checked
from .tflite import TFLiteModel

REPO = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).resolve().parents[2].parent / "shared" / "lite-sources" / "face_landmark.tflite"
OUTPUT = REPO / "facecli" / "models" / "lite" / "weights" / "facemesh.safetensors"


def layer_table() -> dict[str, tuple[str, str]]:
    """Our module prefix -> (tflite layer name, kind) with kind in conv / dw / prelu."""
    table: dict[str, tuple[str, str]] = {"stem": ("conv2d_1", "conv"), "stem_act": ("p_re_lu_1", "prelu")}

    def block(prefix: str, dw: int, pw: int, act: int) -> None:
        table[f"{prefix}.dw"] = (f"depthwise_conv2d_{dw}", "dw")
        table[f"{prefix}.pw"] = (f"conv2d_{pw}", "conv")
        table[f"{prefix}.act"] = (f"p_re_lu_{act}", "prelu")

    for i in range(14):
        block(f"backbone.{i}", i + 1, i + 2, i + 2)
    # mesh head: three blocks from the 6x6 map, 1x1 to 32 channels, one block, 3x3/3 conv
    for j in range(3):
        block(f"mesh_head.blocks.{j}", 15 + j, 16 + j, 16 + j)
    table["mesh_head.reduce"] = ("conv2d_19", "conv")
    table["mesh_head.reduce_act"] = ("p_re_lu_19", "prelu")
    block("mesh_head.refine", 18, 20, 20)
    table["mesh_head.out"] = ("conv2d_21", "conv")
    # presence head
    block("presence_head.blocks.0", 23, 28, 26)
    table["presence_head.reduce"] = ("conv2d_29", "conv")
    table["presence_head.reduce_act"] = ("p_re_lu_27", "prelu")
    block("presence_head.refine", 24, 30, 28)
    table["presence_head.out"] = ("conv2d_31", "conv")
    return table


def to_torch(model: TFLiteModel, layer: str, kind: str) -> dict[str, np.ndarray]:
    """Read one layer's constants and return them in PyTorch layout (float32)."""
    if kind == "prelu":
        alpha = model.constant(model.tensor(f"{layer}/Alpha").index)
        return {"weight": alpha.reshape(-1)}
    kernel = model.constant(model.tensor(f"{layer}/Kernel").index)
    bias = model.constant(model.tensor(f"{layer}/Bias").index)
    if kind == "dw":  # [1, kh, kw, C] -> [C, 1, kh, kw]
        weight = kernel.transpose(3, 0, 1, 2)
    else:  # [O, kh, kw, I] -> [O, I, kh, kw]
        weight = kernel.transpose(0, 3, 1, 2)
    return {"weight": weight, "bias": bias}


def check_wiring(model: TFLiteModel, table: dict[str, tuple[str, str]]) -> None:
    """Every mapped block's pointwise conv must read its depthwise conv's output."""
    out_of = {model.tensors[op.outputs[0]].name: op for op in model.layers()}
    for prefix, (layer, kind) in table.items():
        if prefix.endswith(".pw") and (prefix[:-3] + ".dw") in table:
            dw_layer = table[prefix[:-3] + ".dw"][0]
            consumer = out_of[layer]
            if model.tensor(dw_layer).index not in consumer.inputs:
                raise ValueError(f"{prefix}: {layer} does not read {dw_layer}")
    check_all_layers_used(model, table)


def check_all_layers_used(model: TFLiteModel, table: dict) -> None:
    """Every stored kernel / PReLU alpha is mapped exactly once, and nothing else is."""
    used = {layer for layer, _ in table.values()}
    stored = {t.name.split("/")[0] for t in model.tensors if t.name.endswith(("/Kernel", "/Alpha"))}
    if stored != used:
        raise ValueError(f"unused or unknown layers: {sorted(stored ^ used)}")


def convert(source: Path = SOURCE, output: Path = OUTPUT) -> Path:
    """Write ``output``: fp16 tensors (exactly the source's fp16 values), metadata with its SHA-256."""

    from facecli.models.lite.facemesh import FaceMeshNet

    model = TFLiteModel(source)
    table = layer_table()
    check_wiring(model, table)
    return write_mapped(model, table, FaceMeshNet(), output, torch.float16, "modules/face_landmark/face_landmark.tflite")


def write_mapped(
    model: TFLiteModel, table: dict, net: torch.nn.Module, output: Path, dtype: torch.dtype, origin: str
) -> Path:
    """Copy every mapped tflite layer into ``net``'s keys (as ``dtype``) and write ``output``."""
    tensors: dict[str, torch.Tensor] = {}
    for prefix, (layer, kind) in table.items():
        for name, value in to_torch(model, layer, kind).items():
            tensors[f"{prefix}.{name}"] = torch.from_numpy(np.ascontiguousarray(value)).to(dtype)
    cls = type(net)
    return write_checked(
        output,
        tensors,
        net,
        {
            "source": model.path.name,
            "source_sha256": model.sha256,
            "origin": f"mediapipe 0.10.21 wheel, mediapipe/{origin}",
            "license": "Apache-2.0",
            "model": f"{cls.__module__}.{cls.__name__}",
        },
    )


def convert_step(src: Path, out: Path) -> list[Path]:
    """Registry step (``scripts/convert_lite.py``): ``src/face_landmark.tflite`` -> ``out/facemesh.safetensors``."""
    return [convert(src / "face_landmark.tflite", out / "facemesh.safetensors")]


STEPS = {"facemesh": convert_step}

