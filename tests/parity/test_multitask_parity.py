"""Parity of facecli's feat-v2 multitask model with py-feat 2.1.5 on random weights.

Both sides load the same random-weight file in the published layout; the reference runs
py-feat's own inference wrapper (preprocessing included), fp32 on CPU. Every decoded head is
compared.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from facecli.models.multitask import load_multitask
from tests.parity.conftest import run_reference
from tests.support.multitask_weights import V25_CONFIG, V28_CONFIG, write_random_multitask

pytestmark = pytest.mark.parity

CONFIGS = {
    "v25": V25_CONFIG,
    "v28": V28_CONFIG,
    "hidden_head_frame": {
        **V25_CONFIG,
        "gaze_eye_roi": True,
        "gaze_pose_6d": True,
        "gaze_hidden": 64,
        "gaze_head_frame": True,
    },
    "hidden_bins_plain_emotion": {
        **V25_CONFIG,
        "n_emotion": 8,
        "emotion_use_au_prob": False,
        "bs_use_mesh": False,
        "gaze_hidden": 32,
        "gaze_bins": 90,
        "gaze_bin_lo_deg": -90.0,
        "gaze_bin_hi_deg": 90.0,
    },
}
TOLERANCE = 1e-4
# facecli output field -> reference output name
FIELDS = {
    "au": "au",
    "emotion": "emotion",
    "valence": "valence",
    "arousal": "arousal",
    "gaze": "gaze",
    "pose": "pose",
    "mesh": "mesh478",
    "blendshapes": "blendshapes",
}


def _chips() -> torch.Tensor:
    """[3, 3, 256, 256] in [0, 1]: the astronaut's face, the cameraman's head, smooth noise."""
    from skimage import data

    astronaut = torch.from_numpy(data.astronaut()[0:180, 125:305].copy()).permute(2, 0, 1)
    camera = torch.from_numpy(data.camera()[30:190, 180:340].copy()).expand(3, -1, -1)
    crops = [F.interpolate(c[None].float() / 255, size=(256, 256), mode="bilinear") for c in (astronaut, camera)]
    noise = F.interpolate(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)), size=(256, 256))
    return torch.cat(crops + [noise]).clamp(0, 1).contiguous()


@pytest.fixture(scope="module")
def parity_run(tmp_path_factory, pyfeat_python):
    """Write weights and chips, run the reference once for every config."""
    root = tmp_path_factory.mktemp("multitask_parity")
    chips = _chips()
    save_file({"chips": chips}, str(root / "chips.safetensors"))
    weights = [write_random_multitask(root / f"{name}.safetensors", cfg, seed=i) for i, (name, cfg) in enumerate(CONFIGS.items())]
    out_dir = root / "ref"
    out_dir.mkdir()
    run_reference(pyfeat_python, "ref_multitask.py", root / "chips.safetensors", out_dir, *weights)
    return root, chips


@pytest.mark.parametrize("name", list(CONFIGS))
def test_multitask_matches_pyfeat(parity_run, name):
    root, chips = parity_run
    reference = load_file(str(root / "ref" / f"{name}.safetensors"))
    with safe_open(str(root / "ref" / f"{name}.safetensors"), framework="pt") as f:
        names = f.metadata()
    ours = load_multitask(root / f"{name}.safetensors").predict(chips)
    assert " ".join(ours.au_names) == names["au_names"]
    assert " ".join(ours.emotion_names) == names["emotion_names"]
    diffs = {}
    for field, ref_name in FIELDS.items():
        mine, theirs = getattr(ours, field), reference[ref_name]
        assert mine.shape == theirs.shape, f"{field}: {tuple(mine.shape)} vs {tuple(theirs.shape)}"
        diffs[field] = float((mine - theirs).abs().max())
    print(f"\n{name} max abs diff: " + ", ".join(f"{k}={v:.2e}" for k, v in diffs.items()))
    bad = {k: v for k, v in diffs.items() if not v < TOLERANCE}
    assert not bad, f"{name}: heads differ beyond {TOLERANCE}: {bad}"
    # The comparison is meaningful only if the heads vary across the batch.
    assert float(np.ptp(reference["au"].numpy(), axis=0).max()) > 1e-3
    assert float(reference["gaze"].std()) > 1e-4
