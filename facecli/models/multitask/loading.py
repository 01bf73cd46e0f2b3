"""Load a feat-v2 multitask weight file (safetensors with the config in its metadata)."""

from __future__ import annotations

from pathlib import Path

from facecli.models.multitask.config import MultitaskConfig, UnsupportedModelConfig
from facecli.models.multitask.model import FaceMultitaskV2
from facecli.models.weights import WeightsError, load_state_dict_strict, read_safetensors

CONFIG_KEY = "config"  # safetensors metadata key holding the model config as JSON


def load_multitask(path: str | Path) -> FaceMultitaskV2:
    """Build the model described by the file's metadata and load its tensors strictly.

    Args:
        path: a ``.safetensors`` file in the published ``face_multitask_v2`` layout.

    Returns:
        FaceMultitaskV2 in eval mode, on the CPU, float32.

    Raises:
        UnsupportedModelConfig: the config names a variant facecli does not implement.
        WeightsError: the file is missing or unreadable, has no valid config, or its tensors
            do not match the architecture (the message names the file and the key).
    """
    tensors, metadata = read_safetensors(path)
    if CONFIG_KEY not in metadata:
        raise WeightsError(f"{path}: safetensors metadata has no {CONFIG_KEY!r} entry (not a multitask model file?)")
    try:
        config = MultitaskConfig.from_metadata(metadata[CONFIG_KEY])
        model = FaceMultitaskV2(config)
    except UnsupportedModelConfig as exc:
        raise UnsupportedModelConfig(f"{path}: {exc}") from None
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    load_state_dict_strict(model, tensors, path)
    return model.eval()
