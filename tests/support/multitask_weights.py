"""Random feat-v2 multitask weight files in the published layout, and key-list checks.

``write_random_multitask`` builds facecli's own model from a config dict, gives every tensor
non-trivial random values (so BatchNorm statistics, LayerNorm/GRN affines and biases all
matter in parity tests) and saves it like the published ``face_multitask_v28.safetensors``:
tensors under their state-dict names, the config as JSON under metadata key ``"config"``.

``read_key_list`` parses the spec key lists (``name<TAB>(shape)<TAB>dtype`` lines after ``#``
header lines); ``model_key_table`` gives the same table for a model, for exact comparison.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from torch import nn

# Configs of the published files (v2.5-style and v2.8 key-list headers).
from facecli.models.random_weights import V25_CONFIG, V28_CONFIG, randomize_  # noqa: E402,F401
from facecli.models.random_weights import write_random_multitask as _write_random_multitask  # noqa: E402

from tests.paths import KEYS_DIR as SPEC_KEYS_DIR  # noqa: E402,F401  (the spec's key lists, in tests/data)
KEY_LISTS = {"v25": "keys_multitask_v25style.txt", "v28": "keys_multitask_v28_hypothesis.txt"}

KeyTable = dict[str, tuple[tuple[int, ...], str]]


def write_random_multitask(path: str | Path, config: dict, seed: int = 0) -> Path:
    """Write a random-weight multitask file in the published layout (see facecli.models.random_weights)."""
    return _write_random_multitask(path, config, seed)


def read_key_list(path: str | Path) -> tuple[dict, KeyTable]:
    """Parse a spec key list.

    Returns:
        (config dict from the header, {name: (shape, dtype)}).
    """
    lines = Path(path).read_text().splitlines()
    match = re.search(r"\(\*\*(\{.*\})\)\)", lines[0])
    config = json.loads(match.group(1)) if match else {}
    table: KeyTable = {}
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        name, shape, dtype = line.split("\t")
        table[name] = (tuple(int(n) for n in re.findall(r"\d+", shape)), dtype)
    return config, table


def model_key_table(model: nn.Module) -> KeyTable:
    """{state-dict name: (shape, dtype name)} of a model, dtype as in the key lists (``float32``)."""
    return {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()}
