"""Convert MediaPipe's BlazeFace .tflite files to facecli safetensors (step ``blazeface``).

The network's convolutions run in the same order as the CONV_2D / DEPTHWISE_CONV_2D operators
of the .tflite graph, so the mapping is positional: the PyTorch module is traced once with
hooks to list its convolutions in call order, and each is paired with the next tflite
convolution after checking kind, kernel shape, stride and padding.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lite_convert.safetensors_io import write_safetensors
from lite_convert.tflite import Op, TFLiteModel

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from facecli.models.lite.blazeface import BlazeFace  # noqa: E402
from facecli.models.lite.layers import Conv2dSame  # noqa: E402

SOURCES = {
    "short": "face_detection_short_range.tflite",
    "full": "face_detection_full_range_sparse.tflite",
}


def _conv_call_order(model: BlazeFace) -> list[tuple[str, nn.Conv2d]]:
    """The model's Conv2d modules in the order its forward pass calls them."""
    order: list[tuple[str, nn.Conv2d]] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, _inp, name=name: order.append((name, mod)))
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        model(torch.zeros(1, 3, model.input_size, model.input_size))
    for h in hooks:
        h.remove()
    return order


def _tflite_padding(tfl: TFLiteModel, op: Op) -> str:
    """'SAME', 'VALID', or 'PAD1' when a VALID conv reads the output of a symmetric 1-pixel PAD."""
    if op.options["padding"] == "SAME":
        return "SAME"
    producer = tfl.producer(op.inputs[0])
    if producer is not None and producer.opcode == "PAD":
        pads = tfl.constant(producer.inputs[1])
        if pads is not None and pads.tolist() == [[0, 0], [1, 1], [1, 1], [0, 0]]:
            return "PAD1"
    return "VALID"


def _expected_padding(conv: nn.Conv2d) -> set[str]:
    k = conv.kernel_size[0]
    if isinstance(conv, Conv2dSame):
        return {"SAME"} if k > 1 else {"SAME", "VALID"}
    if conv.padding == (0, 0):
        return {"VALID", "SAME"} if k == 1 else {"VALID"}
    if conv.stride[0] == 1 and conv.padding == ((k - 1) // 2,) * 2:
        return {"PAD1", "SAME"}  # an odd kernel at stride 1: 'SAME' pads (k - 1) / 2 on every side
    return {"PAD1"}


def convert_variant(variant: str, src: Path, out: Path) -> Path:
    """Convert one variant; returns the written safetensors path."""
    tfl = TFLiteModel(src / SOURCES[variant])
    model = BlazeFace(variant)
    modules = _conv_call_order(model)
    ops = [op for op in tfl.layers() if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    if len(ops) != len(modules):
        raise ValueError(f"{tfl.path.name}: {len(ops)} convolutions in the file, {len(modules)} in the model")

    state: dict[str, torch.Tensor] = {}
    for (name, conv), op in zip(modules, ops):
        weight, bias = tfl.constant(op.inputs[1]), tfl.constant(op.inputs[2])
        if op.opcode == "DEPTHWISE_CONV_2D":  # [1, kh, kw, C] -> [C, 1, kh, kw]
            if conv.groups != conv.in_channels:
                raise ValueError(f"{name}: file has a depthwise conv (op {op.index}), model does not")
            weight = weight.transpose(3, 0, 1, 2)
        else:  # [O, kh, kw, I] -> [O, I, kh, kw]
            weight = weight.transpose(0, 3, 1, 2)
        stride = (op.options["stride_h"], op.options["stride_w"])
        padding = _tflite_padding(tfl, op)
        problems = []
        if tuple(weight.shape) != tuple(conv.weight.shape):
            problems.append(f"weight {weight.shape} vs {tuple(conv.weight.shape)}")
        if stride != conv.stride:
            problems.append(f"stride {stride} vs {conv.stride}")
        if padding not in _expected_padding(conv):
            problems.append(f"padding {padding}")
        if problems:
            raise ValueError(f"{tfl.path.name} op {op.index} -> {name}: " + "; ".join(problems))
        state[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(weight))
        state[f"{name}.bias"] = torch.from_numpy(np.ascontiguousarray(bias))

    # The file stores fp16 weights; keep fp16 when that is exact, fp32 otherwise.
    for key, value in state.items():
        half = value.half()
        state[key] = half if torch.equal(half.float(), value) else value.float().contiguous()
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)

    return write_safetensors(
        out / f"blazeface_{variant}.safetensors",
        state,
        metadata={
            "format": "pt",
            "model": f"BlazeFace {variant} range",
            "source": f"mediapipe 0.10.21 mediapipe/modules/face_detection/{SOURCES[variant]}",
            "source_sha256": tfl.sha256,
            "license": "Apache-2.0",
            "converter": "scripts/convert_lite.py blazeface",
        },
    )


def convert(src: Path, out: Path) -> list[Path]:
    """Step entry: write blazeface_short.safetensors and blazeface_full.safetensors."""
    return [convert_variant(variant, src, out) for variant in SOURCES]


STEPS = {"blazeface": convert}
