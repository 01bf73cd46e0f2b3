"""Convert dlib's ``dlib_face_recognition_resnet_model_v1.dat`` to facecli's DlibResNet.

dlib serialises a network as a stream of values, outermost layer first for the loss and then
the layers from the input onwards. Each layer's details start with a tag string
(``con_4``, ``affine_``, ``relu_``, ``max_pool_2``, ``avg_pool_2``, ``add_prev_``, ``fc_2``);
tag/skip layers have no record of their own. Encodings:

* integer: one header byte (low nibble = number of bytes, bit 7 = negative) then the magnitude
  as little-endian bytes;
* float/double scalar: two integers, mantissa and exponent (value = m * 2**e);
* string: integer length, then the bytes;
* tensor: integer version (2), num_samples, k, nr, nc, then that many little-endian float32.

Records used here (after the tag):

* ``con_4``: params tensor (filters [out, in, kh, kw] then biases [out], flat), num_filters,
  nr, nc, stride_y, stride_x, padding_y, padding_x.
* ``affine_``: params tensor (gamma [k] then beta [k]).
* ``max_pool_2`` / ``avg_pool_2``: nr, nc, stride_y, stride_x, padding_y, padding_x (nr = nc = 0:
  average over the whole map).
* ``fc_2``: num_outputs, num_inputs, params tensor [num_inputs, num_outputs] (+ a bias row when
  the layer has one).

Each affine is folded into the convolution before it. The converter checks the layer sequence,
kernel sizes, strides and paddings against :data:`facecli.models.lite.dlib_resnet.BLOCKS`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from facecli.models.lite.dlib_resnet import BLOCKS, PIXEL_MEAN, WEIGHTS_FILE, DlibResNet

from .safetensors_io import write_checked

SOURCE_NAME = "dlib_face_recognition_resnet_model_v1.dat"
TAGS = (b"con_4", b"affine_", b"relu_", b"max_pool_2", b"avg_pool_2", b"add_prev_", b"fc_2")
_TAG_RE = re.compile(rb"\x01([\x04-\x10])(" + b"|".join(TAGS) + rb")")
FP16_TOLERANCE = 1e-3  # largest embedding change accepted for fp16 storage


@dataclass
class Record:
    """One layer record: its tag, integer fields and float32 parameters."""

    tag: str
    ints: list[int] = field(default_factory=list)
    params: np.ndarray | None = None


class DlibReader:
    """Sequential reader of dlib's serialisation format over an in-memory file."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def integer(self) -> int:
        head = self.data[self.pos]
        size = head & 0x0F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if head & 0x80 else value

    def scalar(self) -> float:
        mantissa = self.integer()
        return mantissa * 2.0 ** self.integer()

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise ValueError(f"tensor version {version} at byte {self.pos}, expected 2")
        dims = [self.integer() for _ in range(4)]
        count = int(np.prod(dims))
        values = np.frombuffer(self.data, "<f4", count, self.pos).reshape(dims)
        self.pos += 4 * count
        return values.astype(np.float32)

    def next_tag(self) -> str | None:
        """Move past the next layer tag string and return it (None at the end of the file)."""
        match = _TAG_RE.search(self.data, self.pos)
        if match is None or int(match.group(1)[0]) != len(match.group(2)):
            return None
        self.pos = match.end()
        return match.group(2).decode()


def read_records(data: bytes) -> tuple[list[Record], tuple[float, float, float]]:
    """Layer records in input-to-output order, and the input layer's RGB mean.

    The search for the next tag always starts after the previous record's tensor data, so
    float bytes are never mistaken for a tag.
    """
    reader = DlibReader(data)
    start = data.find(b"input_rgb_image_sized")
    if start < 0:
        raise ValueError("no input_rgb_image_sized layer: not a dlib face-recognition network")
    reader.pos = start + len(b"input_rgb_image_sized")
    mean = (reader.scalar(), reader.scalar(), reader.scalar())
    records: list[Record] = []
    while (tag := reader.next_tag()) is not None:
        record = Record(tag)
        if tag in ("con_4", "affine_"):
            record.params = reader.tensor().reshape(-1)
            if tag == "con_4":
                record.ints = [reader.integer() for _ in range(7)]
        elif tag in ("max_pool_2", "avg_pool_2"):
            record.ints = [reader.integer() for _ in range(6)]
        elif tag == "fc_2":
            record.ints = [reader.integer() for _ in range(2)]
            record.params = reader.tensor().reshape(-1)
        records.append(record)
    return records, mean


def _conv(records: list[Record], i: int, in_chs: int, kernel: int, stride: int, pad: int) -> dict[str, torch.Tensor]:
    """Folded conv weight/bias from records[i] (con_4) and records[i + 1] (affine_)."""
    con, affine = records[i], records[i + 1]
    if con.tag != "con_4" or affine.tag != "affine_":
        raise ValueError(f"record {i}: expected con_4 + affine_, found {con.tag} + {affine.tag}")
    out_chs, nr, nc, sy, sx, py, px = con.ints
    if (nr, nc, sy, sx, py, px) != (kernel, kernel, stride, stride, pad, pad):
        raise ValueError(f"record {i}: con_4 {con.ints} does not match k={kernel} s={stride} p={pad}")
    n_weights = out_chs * in_chs * kernel * kernel
    if con.params.size != n_weights + out_chs or affine.params.size != 2 * out_chs:
        raise ValueError(f"record {i}: parameter count {con.params.size} for {out_chs}x{in_chs}x{kernel}^2")
    weight = torch.from_numpy(con.params[:n_weights].reshape(out_chs, in_chs, kernel, kernel).copy()).double()
    bias = torch.from_numpy(con.params[n_weights:].copy()).double()
    gamma = torch.from_numpy(affine.params[:out_chs].copy()).double()
    beta = torch.from_numpy(affine.params[out_chs:].copy()).double()
    return {"weight": (weight * gamma[:, None, None, None]).float(), "bias": (bias * gamma + beta).float()}


def _expect(records: list[Record], i: int, tag: str, ints: list[int] | None = None) -> None:
    if records[i].tag != tag or (ints is not None and records[i].ints != ints):
        raise ValueError(f"record {i}: expected {tag} {ints or ''}, found {records[i].tag} {records[i].ints}")


def state_dict_from_records(records: list[Record]) -> dict[str, torch.Tensor]:
    """DlibResNet state dict (fp32) from the layer records, checking the whole layer sequence."""
    state: dict[str, torch.Tensor] = {}
    for name, value in _conv(records, 0, 3, 7, 2, 0).items():
        state[f"stem.{name}"] = value
    _expect(records, 2, "relu_")
    _expect(records, 3, "max_pool_2", [3, 3, 2, 2, 0, 0])
    i, in_chs = 4, 32
    for b, (out_chs, stride) in enumerate(BLOCKS):
        conv1 = _conv(records, i, in_chs, 3, stride, 0 if stride == 2 else 1)
        _expect(records, i + 2, "relu_")
        conv2 = _conv(records, i + 3, out_chs, 3, 1, 1)
        i += 5
        if stride == 2:
            _expect(records, i, "avg_pool_2", [2, 2, 2, 2, 0, 0])
            i += 1
        _expect(records, i, "add_prev_")
        _expect(records, i + 1, "relu_")
        i += 2
        for name, value in conv1.items():
            state[f"blocks.{b}.conv1.{name}"] = value
        for name, value in conv2.items():
            state[f"blocks.{b}.conv2.{name}"] = value
        in_chs = out_chs
    _expect(records, i, "avg_pool_2", [0, 0, 1, 1, 0, 0])
    _expect(records, i + 1, "fc_2", [128, in_chs])
    fc = records[i + 1].params
    if fc.size != in_chs * 128:
        raise ValueError(f"fc_2 has {fc.size} parameters, expected {in_chs}x128 without bias")
    state["head.weight"] = torch.from_numpy(fc.reshape(in_chs, 128).T.copy())
    if len(records) != i + 2:
        raise ValueError(f"{len(records) - i - 2} unexpected records after fc_2")
    return state


def _fp16_error(state: dict[str, torch.Tensor]) -> float:
    """Largest embedding change from fp16 weight storage, on a few synthetic chips."""
    full, half = DlibResNet().eval(), DlibResNet().eval()
    full.load_state_dict(state)
    half.load_state_dict({k: v.half().float() for k, v in state.items()})
    gen = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 150, 150, generator=gen), 9, 1, 4)
    x = (smooth * 255 - torch.tensor(PIXEL_MEAN)[:, None, None]) / 256
    with torch.no_grad():
        return float((full(x) - half(x)).abs().max())


def convert_file(source: Path, out: Path, fp16: bool | None = None) -> Path:
    """Write ``out/dlib_resnet.safetensors`` from dlib's .dat file.

    Args:
        source: dlib_face_recognition_resnet_model_v1.dat.
        out: output folder.
        fp16: store fp16 weights; None chooses fp16 when it changes embeddings by < 1e-3.
    """
    data = source.read_bytes()
    records, mean = read_records(data)
    if max(abs(a - b) for a, b in zip(mean, PIXEL_MEAN)) > 1e-3:
        raise ValueError(f"{source}: input mean {mean} differs from {PIXEL_MEAN}")
    state = state_dict_from_records(records)
    DlibResNet().load_state_dict(state, strict=True)
    error = _fp16_error(state)
    if fp16 is None:
        fp16 = error < FP16_TOLERANCE
    if fp16:
        state = {k: v.half() for k, v in state.items()}
    return write_checked(
        out / WEIGHTS_FILE,
        state,
        DlibResNet(),
        {
            "format": "pt",
            "model": "dlib face recognition ResNet v1 (128-d), affine layers folded into convolutions",
            "source": f"face_recognition_models 0.3.0 models/{SOURCE_NAME}",
            "source_sha256": hashlib.sha256(data).hexdigest(),
            "license": "CC0-1.0",
            "dtype": "float16" if fp16 else "float32",
            "fp16_max_embedding_change": f"{error:.2e}",
            "converter": "scripts/convert_lite.py dlib_resnet",
        },
    )


def convert(src: Path, out: Path) -> list[Path]:
    """Step entry: write dlib_resnet.safetensors."""
    return [convert_file(Path(src) / SOURCE_NAME, Path(out))]


STEPS = {"dlib_resnet": convert}
