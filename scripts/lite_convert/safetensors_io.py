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
