"""Byte-reproducible safetensors writing for the converters (dev-only).

``safetensors.torch.save_file`` writes the ``__metadata__`` map in hash order, so two runs of
a converter give files with equal tensors but different bytes. ``write_safetensors`` saves,
then rewrites the JSON header with sorted keys so equal inputs give identical files.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors.torch import save_file


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Save ``tensors`` (contiguous) with string ``metadata``; the header is canonical JSON.

    Returns:
        the written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=dict(metadata))
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data 8-byte aligned, as safetensors does
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + size :])
    path.chmod(0o644)  # save_file creates 0600; package data must be world-readable
    return path


def write_checked(
    path: str | Path, tensors: dict[str, torch.Tensor], model: torch.nn.Module, metadata: dict[str, str]
) -> Path:
    """Check that ``tensors`` have exactly ``model``'s state-dict keys and shapes, then write them.

    ``num_batches_tracked`` buffers may be left out (the originals have none).

    Raises:
        ValueError: naming the first differing keys.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != got:
        diff = sorted(set(expected.items()) ^ set(got.items()))
        raise ValueError(f"converted tensors do not match {type(model).__name__}: {diff[:6]}")
    return write_safetensors(path, tensors, metadata)
