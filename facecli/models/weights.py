"""Strict state-dict loading shared by every model in facecli.

A weight file that does not match the architecture is an error that names the file and the
first offending keys; nothing is loaded silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn


class WeightsError(RuntimeError):
    """A weight file is missing, unreadable or does not match the architecture."""


def _names(keys: Iterable[str], limit: int = 5) -> str:
    keys = sorted(keys)
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_dict_strict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str | Path,
    *,
    ignore_missing: Iterable[str] = (),
) -> None:
    """Load ``state_dict`` into ``module``; every key must match by name and shape.

    Args:
        module: the freshly built model.
        state_dict: tensors read from ``source``.
        source: the file the tensors came from, named in error messages.
        ignore_missing: key suffixes that may be absent from the file (e.g. ``num_batches_tracked``).

    Raises:
        WeightsError: naming the missing, unexpected or mis-shaped keys.
    """
    expected = module.state_dict()
    suffixes = tuple(ignore_missing)
    missing = [k for k in expected if k not in state_dict and not (suffixes and k.endswith(suffixes))]
    unexpected = [k for k in state_dict if k not in expected]
    if missing:
        raise WeightsError(f"{source}: missing key {_names(missing)}")
    if unexpected:
        raise WeightsError(f"{source}: unexpected key {_names(unexpected)}")
    bad_shape = [
        f"{k!r} file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if tuple(v.shape) != tuple(expected[k].shape)
    ]
    if bad_shape:
        raise WeightsError(f"{source}: shape mismatch for {'; '.join(bad_shape[:3])}")
    module.load_state_dict(dict(state_dict), strict=False)


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a .safetensors file into (tensors on CPU, header metadata).

    Raises:
        WeightsError: when the file is missing or not a valid safetensors file.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: file not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types for corrupt headers
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    return tensors, metadata


def read_torch_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a plain ``torch.save`` state dict with ``weights_only=True``.

    Raises:
        WeightsError: when the file is missing, unreadable or not a dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: file not found")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable torch state dict ({exc})") from None
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a dict of tensors")
    return dict(obj)


def load_safetensors_into(
    module: nn.Module, path: str | Path | object, *, ignore_missing: Iterable[str] = ()
) -> nn.Module:
    """Read ``path`` (a file or an importlib.resources Traversable) and load it strictly into ``module``.

    Tensors stored in half precision are upcast to the module's float32.
    """
    from importlib.resources import as_file

    if isinstance(path, str):
        path = Path(path)
    with as_file(path) as real:  # a plain path, or a packaged resource made available as a file
        tensors, _ = read_safetensors(real)
        state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
        load_state_dict_strict(module, state, real, ignore_missing=ignore_missing)
    return module


def packaged_lite_file(name: str):
    """The packaged lite weight file ``facecli/models/lite/weights/<name>`` (a Traversable)."""
    from importlib.resources import files

    return files("facecli.models.lite") / "weights" / name
