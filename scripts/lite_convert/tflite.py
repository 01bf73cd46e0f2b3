"""A small reader for .tflite files, for the lite-set converters (dev-only, not shipped).

It wraps the flatbuffer accessors of the ``tflite`` pip package with a plain-Python view:

* ``TFLiteModel(path)`` parses the file once (subgraph 0) and records its SHA-256.
* ``model.operators``: every operator in execution order as an ``Op`` with the opcode name
  (``"CONV_2D"``, or ``"CUSTOM:<name>"``), input / output tensor indices and its builtin
  options as a dict with snake_case keys and enum values as names, e.g.
  ``{"padding": "SAME", "stride_w": 2, "stride_h": 2, "fused_activation_function": "RELU"}``.
* ``model.tensors``: every tensor as a ``TensorInfo`` (name, shape, numpy dtype, buffer, sparse).
* ``model.data(i)``: the raw constant stored for tensor ``i`` (sparse tensors decoded to dense),
  in the stored dtype, or ``None`` for activations.
* ``model.constant(i)``: the float32 value of a constant tensor, following the chains that
  converters insert in front of weights (``DENSIFY`` of a sparse tensor, ``DEQUANTIZE`` of fp16 or
  int8 data); ``None`` when ``i`` is computed from the network input.
* ``model.layers()``: the operators that do real work, i.e. without the ``DEQUANTIZE`` /
  ``DENSIFY`` operators that only unpack constants.

Example::

    m = TFLiteModel("face_detection_short_range.tflite")
    for op in m.layers():
        if op.opcode == "CONV_2D":
            w = m.constant(op.inputs[0 + 1])   # [out, kh, kw, in] float32
    print(m.summary())

Run ``python -m lite_convert.tflite FILE.tflite`` from ``scripts/`` to print the summary.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tflite as _fb
from tflite.utils import BUILTIN_OPCODE2NAME

# TensorType enum -> numpy dtype (the types these model files can hold).
_DTYPES: dict[int, Any] = {
    0: np.float32,
    1: np.float16,
    2: np.int32,
    3: np.uint8,
    4: np.int64,
    6: np.bool_,
    7: np.int16,
    9: np.int8,
    10: np.float64,
}

# Options whose integer value is an enum; mapped to the enum's member names.
_ENUM_OPTIONS = {
    "padding": "Padding",
    "fused_activation_function": "ActivationFunctionType",
}

# Operators that only turn stored constants into usable float tensors.
UNPACK_OPCODES = frozenset({"DEQUANTIZE", "DENSIFY"})


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the graph.

    index: position in the subgraph's tensor list.
    name: the tensor name stored in the file.
    shape: static shape (NHWC for activations; OHWI for conv kernels, 1HWO for depthwise).
    dtype: numpy dtype of the stored data.
    buffer: buffer index (0 means no data: an activation).
    sparse: True when the buffer holds a sparse (CSR-like) encoding.
    quantization: (scale, zero_point) arrays when the tensor is int-quantised, else None.
    """

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: Any
    buffer: int
    sparse: bool
    quantization: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True)
class Op:
    """One operator, in execution order.

    index: position in the subgraph's operator list.
    opcode: builtin operator name ("CONV_2D", ...) or "CUSTOM:<custom code>".
    inputs / outputs: tensor indices (-1 marks an omitted optional input).
    options: builtin options, snake_case keys, enum values as names ("SAME", "RELU", ...).
    """

    index: int
    opcode: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _enum_names(enum_module: str) -> dict[int, str]:
    cls = getattr(importlib.import_module(f"tflite.{enum_module}"), enum_module)
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def _read_options(op: Any) -> dict[str, Any]:
    """Decode an operator's builtin options table into a dict of plain values."""
    kind = op.BuiltinOptionsType()
    if kind == 0 or op.BuiltinOptions() is None:
        return {}
    class_name = _enum_names("BuiltinOptions")[kind]
    cls = getattr(importlib.import_module(f"tflite.{class_name}"), class_name)
    table = op.BuiltinOptions()
    obj = cls()
    obj.Init(table.Bytes, table.Pos)
    out: dict[str, Any] = {}
    for attr in dir(cls):
        if attr.startswith(("_", "Init", "GetRootAs")) or attr.endswith(("BufferHasIdentifier", "Length", "IsNone")):
            continue
        getter = getattr(obj, attr)
        if not callable(getter):
            continue
        if attr.endswith("AsNumpy"):
            value = getter()
            key = _snake(attr[: -len("AsNumpy")])
            out[key] = np.asarray(value) if not isinstance(value, int) else np.zeros(0, np.int32)
            continue
        if hasattr(obj, attr + "AsNumpy"):
            continue  # vector element accessor; the AsNumpy form above covers it
        try:
            value = getter()
        except TypeError:
            continue  # needs an argument
        key = _snake(attr)
        if key in _ENUM_OPTIONS:
            value = _enum_names(_ENUM_OPTIONS[key]).get(value, value)
        out[key] = value
    return out


def _index_vector(dim: Any, which: str) -> np.ndarray:
    """Segments or indices of a sparse dimension as int64 (the union holds int32/uint16/uint8)."""
    kind = getattr(dim, f"Array{which}Type")()
    table = getattr(dim, f"Array{which}")()
    name = {1: "Int32Vector", 2: "Uint16Vector", 3: "Uint8Vector"}[kind]
    vec = getattr(importlib.import_module(f"tflite.{name}"), name)()
    vec.Init(table.Bytes, table.Pos)
    return np.asarray(vec.ValuesAsNumpy(), dtype=np.int64)


def densify(values: np.ndarray, shape: tuple[int, ...], sparsity: Any) -> np.ndarray:
    """Expand a TFLite sparse tensor to dense.

    Args:
        values: the stored non-zero values, 1-D, in traversal order.
        shape: the dense shape of the tensor.
        sparsity: the tensor's ``SparsityParameters`` table.

    Returns:
        np.ndarray of ``shape`` and ``values.dtype`` with zeros where nothing is stored.
    """
    order = [int(i) for i in sparsity.TraversalOrderAsNumpy()]
    block_map = [int(i) for i in np.atleast_1d(sparsity.BlockMapAsNumpy())] if sparsity.BlockMapLength() else []
    dims = [sparsity.DimMetadata(k) for k in range(sparsity.DimMetadataLength())]
    rank = len(shape)
    block_size = {block_map[j]: dims[rank + j].DenseSize() for j in range(len(block_map))}

    # Walk the traversal levels: each level expands every (parent position, coordinate) row.
    coords = np.zeros((1, len(order)), dtype=np.int64)  # one coordinate per traversed dim
    positions = np.zeros(1, dtype=np.int64)  # position of each row within its level
    for level, dim_id in enumerate(order):
        meta = dims[level]
        if meta.Format() == 0:  # DENSE
            size = meta.DenseSize()
            new_coords = np.repeat(coords, size, axis=0)
            new_coords[:, level] = np.tile(np.arange(size), len(coords))
            positions = np.repeat(positions, size) * size + np.tile(np.arange(size), len(positions))
        else:  # SPARSE_CSR
            segments = _index_vector(meta, "Segments")
            indices = _index_vector(meta, "Indices")
            counts = segments[positions + 1] - segments[positions]
            new_coords = np.repeat(coords, counts, axis=0)
            starts = np.repeat(segments[positions], counts)
            within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
            positions = starts + within
            new_coords[:, level] = indices[positions]
        coords = new_coords
    if len(coords) != values.size:
        raise ValueError(f"sparse tensor: {values.size} values for {len(coords)} stored positions")

    dense_index = np.zeros((len(coords), rank), dtype=np.int64)
    for level, dim_id in enumerate(order):
        if dim_id < rank:
            dense_index[:, dim_id] += coords[:, level] * block_size.get(dim_id, 1)
        else:
            dense_index[:, block_map[dim_id - rank]] += coords[:, level]
    out = np.zeros(shape, dtype=values.dtype)
    out[tuple(dense_index.T)] = values.reshape(-1)
    return out


class TFLiteModel:
    """Parsed view of subgraph 0 of a .tflite file.

    Attributes:
        path: the file.
        sha256: hex SHA-256 of the file bytes.
        tensors: list[TensorInfo] by tensor index.
        operators: list[Op] in execution order.
        inputs / outputs: tensor indices of the graph inputs / outputs.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._bytes = self.path.read_bytes()
        self.sha256 = hashlib.sha256(self._bytes).hexdigest()
        self._model = _fb.Model.GetRootAsModel(self._bytes, 0)
        if self._model.SubgraphsLength() != 1:
            raise ValueError(f"{self.path}: expected one subgraph, found {self._model.SubgraphsLength()}")
        self._graph = self._model.Subgraphs(0)
        self.tensors = [self._tensor_info(i) for i in range(self._graph.TensorsLength())]
        self.operators = [self._op(i) for i in range(self._graph.OperatorsLength())]
        self.inputs = tuple(int(i) for i in self._graph.InputsAsNumpy())
        self.outputs = tuple(int(i) for i in self._graph.OutputsAsNumpy())
        self._producer = {t: op for op in self.operators for t in op.outputs}

    # ---------------------------------------------------------------- parsing
    def _tensor_info(self, i: int) -> TensorInfo:
        t = self._graph.Tensors(i)
        quant = t.Quantization()
        qparams = None
        if quant is not None and quant.ScaleLength() > 0:
            qparams = (np.asarray(quant.ScaleAsNumpy(), np.float32), np.asarray(quant.ZeroPointAsNumpy(), np.int64))
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        return TensorInfo(
            index=i,
            name=t.Name().decode(),
            shape=shape,
            dtype=_DTYPES.get(t.Type(), None),
            buffer=int(t.Buffer()),
            sparse=t.Sparsity() is not None,
            quantization=qparams,
        )

    def _op(self, i: int) -> Op:
        op = self._graph.Operators(i)
        code = self._model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = BUILTIN_OPCODE2NAME.get(builtin, str(builtin))
        if name == "CUSTOM":
            name = "CUSTOM:" + (code.CustomCode() or b"").decode()
        inputs = tuple(int(x) for x in op.InputsAsNumpy()) if op.InputsLength() else ()
        outputs = tuple(int(x) for x in op.OutputsAsNumpy()) if op.OutputsLength() else ()
        return Op(index=i, opcode=name, inputs=inputs, outputs=outputs, options=_read_options(op))

    # ---------------------------------------------------------------- data
    def tensor(self, ref: int | str) -> TensorInfo:
        """TensorInfo by index or by exact name."""
        if isinstance(ref, int):
            return self.tensors[ref]
        for info in self.tensors:
            if info.name == ref:
                return info
        raise KeyError(f"{self.path.name}: no tensor named {ref!r}")

    def data(self, index: int) -> np.ndarray | None:
        """Stored constant of tensor ``index`` in its stored dtype (sparse decoded), or None."""
        info = self.tensors[index]
        if info.buffer == 0:
            return None
        buf = self._model.Buffers(info.buffer)
        if buf.DataLength() == 0:
            if buf.Offset() > 1:  # large-model layout: data after the flatbuffer
                raw = self._bytes[buf.Offset() : buf.Offset() + buf.Size()]
            else:
                return None
        else:
            raw = buf.DataAsNumpy().tobytes()
        values = np.frombuffer(raw, dtype=info.dtype).copy()
        if info.sparse:
            return densify(values, info.shape, self._graph.Tensors(index).Sparsity())
        return values.reshape(info.shape)

    def constant(self, index: int) -> np.ndarray | None:
        """Float32 value of a constant tensor, through DENSIFY / DEQUANTIZE chains; None if computed."""
        stored = self.data(index)
        if stored is not None:
            info = self.tensors[index]
            if info.quantization is not None and np.issubdtype(stored.dtype, np.integer) and stored.dtype != np.int32:
                scale, zero = info.quantization
                axis_shape = [1] * stored.ndim
                if scale.size > 1:  # per-channel: quantised dimension is 0 in these files
                    axis_shape[0] = -1
                return ((stored.astype(np.float32) - zero.reshape(axis_shape)) * scale.reshape(axis_shape)).astype(np.float32)
            return stored.astype(np.float32) if stored.dtype in (np.float16, np.float64) else stored
        op = self._producer.get(index)
        if op is None or op.opcode not in UNPACK_OPCODES:
            return None
        source = self.constant(op.inputs[0])
        return None if source is None else source.astype(np.float32)

    def producer(self, index: int) -> Op | None:
        """The operator that writes tensor ``index`` (None for graph inputs and stored constants)."""
        return self._producer.get(index)

    def consumers(self, index: int) -> list[Op]:
        """Operators that read tensor ``index``, in execution order."""
        return [op for op in self.operators if index in op.inputs]

    def layers(self) -> list[Op]:
        """Operators in execution order without the DEQUANTIZE / DENSIFY constant unpacking."""
        return [op for op in self.operators if not (op.opcode in UNPACK_OPCODES and self.constant(op.outputs[0]) is not None)]

    def summary(self) -> str:
        """One line per working operator: index, opcode, options, input and output shapes."""
        lines = [f"{self.path.name}  sha256={self.sha256[:16]}  inputs={self.inputs} outputs={self.outputs}"]
        for op in self.layers():
            opts = {k: v for k, v in op.options.items() if not isinstance(v, np.ndarray)}
            ins = []
            for i in op.inputs:
                if i < 0:
                    continue
                tag = "c" if self.constant(i) is not None else ""
                ins.append(f"{i}{tag}{list(self.tensors[i].shape)}")
            outs = [f"{i}{list(self.tensors[i].shape)}" for i in op.outputs]
            lines.append(f"{op.index:4d} {op.opcode:<20} {' '.join(ins)} -> {' '.join(outs)} {opts}")
        return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - developer aid
    import sys

    for arg in sys.argv[1:]:
        print(TFLiteModel(arg).summary())
