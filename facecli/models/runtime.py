"""How a model set's networks run: memory format and ``--precision fp32|bf16|auto|exact``.

Each model set lists its networks (``networks()``) as :class:`Network` records saying whether the
network is faster with channels-last activations and whether it gains from bfloat16 (measured
on this project's CPU, see docs/performance.md). :func:`configure` then wraps each network's
forward pass once, on the instance: inputs converted to channels-last where it helps, the
forward run under bfloat16 autocast when the precision is bf16 and the network gains from it,
and the outputs cast back to float32. Everything around the networks - box decoding, NMS,
coordinate maps, pose fits - always runs in float32 (bfloat16 keeps 8 significant bits: a
coordinate near 1000 pixels would be off by up to 4 pixels).

``auto`` picks bfloat16 where the hardware computes it natively: CUDA devices that support it,
and CPUs with AVX512-BF16 or AMX (read from /proc/cpuinfo); everywhere else float32.

``fp32`` runs float32 in each network's fastest memory layout; ``exact`` runs float32 in the
layout the network's reference implementation computes in (feat-v2: py-feat's contiguous NCHW),
so the arithmetic is operation for operation the reference's and its outputs match to the last
digits. The two differ only in the order in which convolutions add up their products (relative
differences near 1e-6, which a random-weight network can amplify; docs/performance.md).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from facecli.config import PRECISIONS


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(device: torch.device, flags: frozenset[str] | None = None) -> bool:
    """Does ``device`` compute bfloat16 natively (fast), so that ``auto`` should use it?"""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        flags = cpu_flags() if flags is None else flags
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    return False


def resolve_precision(name: str, device: torch.device, flags: frozenset[str] | None = None) -> str:
    """``fp32``, ``bf16``, ``auto`` or ``exact`` -> the precision used on ``device`` ("fp32",
    "bf16" or "exact").

    Raises:
        ValueError: unknown name, or bf16 asked for on a device without autocast support (MPS).
    """
    if name not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "auto":
        return "bf16" if native_bf16(device, flags) else "fp32"
    if name == "bf16" and device.type not in ("cpu", "cuda"):
        raise ValueError(f"--precision bf16 is supported on cpu and cuda, not {device.type}")
    return name


def _to_float(value):
    """Floating tensors in ``value`` (tensor, tuple, list, dict, NamedTuple, dataclass) as float32."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_to_float(v) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_to_float(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_float(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _to_float(getattr(value, f.name)) for f in dataclasses.fields(value)})
    return value


@dataclass(frozen=True)
class Network:
    """One network of a model set and how it runs best.

    module: the network; its forward pass is all it computes (no decoding).
    channels_last: run with channels-last activations in float32 (``fp32``: oneDNN's convolutions
        on CPU are faster so); False runs contiguous (NCHW) activations.
    bf16: gains from bfloat16 autocast where the hardware has it (large convolutions, matmuls).
    channels_last_bf16: run channels-last under bfloat16 (oneDNN's fast bf16 convolutions want it).
    channels_last_exact: the layout of ``--precision exact``, the one the network's reference
        computes in (feat-v2's networks: False, py-feat's NCHW); None: as ``channels_last``.
    """

    module: nn.Module
    channels_last: bool = False
    bf16: bool = False
    channels_last_bf16: bool = False
    channels_last_exact: bool | None = None

    def layout(self, precision: str) -> torch.memory_format:
        """The memory format of the network's activations at a resolved precision."""
        if precision == "bf16":
            channels_last = self.channels_last_bf16
        elif precision == "exact" and self.channels_last_exact is not None:
            channels_last = self.channels_last_exact
        else:
            channels_last = self.channels_last
        return torch.channels_last if channels_last else torch.contiguous_format


def _layout(value, memory_format: torch.memory_format):
    if isinstance(value, torch.Tensor) and value.ndim == 4 and value.is_floating_point():
        return value.contiguous(memory_format=memory_format)
    return value


def wrap_forward(net: Network, device_type: str, precision: str) -> nn.Module:
    """Wrap ``net.module``'s forward on this instance (the class and other instances unchanged):
    4-D float inputs in the network's memory format at ``precision`` (resolved: fp32, bf16 or
    exact), autocast to bfloat16 when it is bf16, float32 outputs. Calling it again replaces the
    earlier wrapper."""
    module = net.module
    inner = type(module).forward.__get__(module)
    bf16 = precision == "bf16"
    memory_format = net.layout(precision)
    module.to(memory_format=memory_format)

    @functools.wraps(inner)
    def forward(*args, **kwargs):
        args = tuple(_layout(a, memory_format) for a in args)
        if not bf16:
            return inner(*args, **kwargs)
        with torch.autocast(device_type, dtype=torch.bfloat16):
            out = inner(*args, **kwargs)
        return _to_float(out)

    module.forward = forward  # type: ignore[method-assign]
    return module


def configure(networks: Mapping[str, Network], precision: str, device: torch.device) -> None:
    """Set every network of a model set up for ``device`` and ``precision`` ("fp32", "bf16" or
    "exact", see :func:`resolve_precision`): bfloat16 only for networks that gain from it."""
    for net in networks.values():
        wrap_forward(net, device.type, "fp32" if precision == "bf16" and not net.bf16 else precision)
