"""Convert MediaPipe's iris_landmark.tflite into iris.safetensors (IrisNet layout).

The .tflite layer names (``conv2d_N``, ``depthwise_conv2d_N``, ``p_re_lu_N``) map to
:class:`facecli.models.lite.iris.IrisNet` keys by a fixed table; the converter checks that every
stored layer is used once, that each block's layers are wired in sequence in the operator graph,
and that the keys and shapes equal the model's.

Run as a step of ``scripts/convert_lite.py`` (step ``iris``) or on its own, from the repository root::

    python -m scripts.lite_convert.iris [SOURCE.tflite] [OUT.safetensors]
"""

from __future__ import annotations

from pathlib import Path

import torch

from .facemesh import check_all_layers_used, write_mapped
from .tflite import TFLiteModel

REPO = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).resolve().parents[2].parent / "shared" / "lite-sources" / "iris_landmark.tflite"
OUTPUT = REPO / "facecli" / "models" / "lite" / "weights" / "iris.safetensors"


def _dw(n: int) -> str:
    return "depthwise_conv2d" if n == 0 else f"depthwise_conv2d_{n}"


def layer_table() -> dict[str, tuple[str, str]]:
    """Our module prefix -> (tflite layer name, kind) with kind in conv / dw / prelu."""
    table: dict[str, tuple[str, str]] = {"stem": ("conv2d", "conv"), "stem_act": ("p_re_lu", "prelu")}

    def block(prefix: str, first_conv: int, dw: int) -> None:
        table[f"{prefix}.reduce"] = (f"conv2d_{first_conv}", "conv")
        table[f"{prefix}.reduce_act"] = (f"p_re_lu_{first_conv}", "prelu")
        table[f"{prefix}.dw"] = (_dw(dw), "dw")
        table[f"{prefix}.pw"] = (f"conv2d_{first_conv + 1}", "conv")
        table[f"{prefix}.act"] = (f"p_re_lu_{first_conv + 1}", "prelu")

    for k in range(10):
        block(f"backbone.{k}", 2 * k + 1, k)
    for m in range(8):
        block(f"contour_head.{m}", 21 + 2 * m, 10 + m)
        block(f"iris_head.{m}", 37 + 2 * m, 18 + m)
    table["contour_head.8"] = ("conv_eyes_contours_and_brows", "conv")
    table["iris_head.8"] = ("conv_iris", "conv")
    return table


def check_wiring(model: TFLiteModel, table: dict[str, tuple[str, str]]) -> None:
    """reduce -> PReLU -> dw -> pw must follow each other in every block; all layers used."""
    for prefix, (layer, _) in table.items():
        if not prefix.endswith(".pw"):
            continue
        base = prefix[: -len(".pw")]
        chain = [table[f"{base}.reduce"][0], table[f"{base}.reduce_act"][0], table[f"{base}.dw"][0], layer]
        for src, dst in zip(chain, chain[1:]):
            if not any(op.inputs[0] == model.tensor(src).index for op in model.consumers(model.tensor(src).index)
                       if model.tensors[op.outputs[0]].name == dst):
                raise ValueError(f"{base}: {dst} does not read {src}")
    check_all_layers_used(model, table)


def convert(source: Path = SOURCE, output: Path = OUTPUT) -> Path:
    """Write ``output`` (float32 as stored in the source; metadata with its name and SHA-256)."""

    from facecli.models.lite.iris import IrisNet

    model = TFLiteModel(source)
    table = layer_table()
    check_wiring(model, table)
    return write_mapped(model, table, IrisNet(), output, torch.float32, "modules/iris_landmark/iris_landmark.tflite")


def convert_step(src: Path, out: Path) -> list[Path]:
    """Registry step (``scripts/convert_lite.py``): ``src/iris_landmark.tflite`` -> ``out/iris.safetensors``."""
    return [convert(src / "iris_landmark.tflite", out / "iris.safetensors")]


STEPS = {"iris": convert_step}

