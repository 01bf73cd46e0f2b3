"""Identity embedders vs py-feat 2.1.5 on the same random weight files (fp32, CPU).

The reference side builds the detectors with py-feat's own loaders (as Detectorv2 does) and
calls ``identity_detector.forward(chips)`` on 256x256 chips in [0, 1].
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from facecli.models.arcface import load_arcface
from facecli.models.facenet import load_facenet
from tests.parity.conftest import run_reference
from tests.support.identity_weights import write_random_arcface, write_random_facenet

pytestmark = pytest.mark.parity

# fp32 on CPU; ArcFace embeddings are not normalised (|x| up to ~30 here), hence the rtol
ATOL, RTOL = 1e-4, 1e-5


def _chip(image: np.ndarray, top: int, left: int, side: int) -> torch.Tensor:
    """A square crop of an HxWx3 uint8 image as a Tensor[3, 256, 256] in [0, 1]."""
    crop = torch.from_numpy(image[top : top + side, left : left + side].copy())
    crop = crop.permute(2, 0, 1).float()[None] / 255.0
    return F.interpolate(crop, size=(256, 256), mode="bilinear", align_corners=False)[0]


@pytest.fixture(scope="module")
def chips() -> torch.Tensor:
    """Tensor[3, 3, 256, 256]: astronaut face, camera-man face (grey), smooth noise."""
    skimage_data = pytest.importorskip("skimage.data")
    astronaut = skimage_data.astronaut()
    camera = np.repeat(skimage_data.camera()[..., None], 3, axis=2)
    noise = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    noise = F.interpolate(noise, size=(256, 256), mode="bilinear", align_corners=False)[0]
    return torch.stack([_chip(astronaut, 0, 130, 160), _chip(camera, 70, 150, 160), noise])


@pytest.mark.parametrize(
    ("kind", "writer", "filename", "loader"),
    [
        ("arcface", write_random_arcface, "arcface_r50.safetensors", load_arcface),
        ("facenet", write_random_facenet, "facenet_20180402_114759_vggface2.pth", load_facenet),
    ],
)
def test_identity_matches_pyfeat(pyfeat_python, tmp_path, chips, kind, writer, filename, loader):
    weights = writer(tmp_path / filename, seed=7)
    save_file({"chips": chips.contiguous()}, str(tmp_path / "chips.safetensors"))
    run_reference(
        pyfeat_python,
        "ref_identity.py",
        kind,
        weights,
        tmp_path / "chips.safetensors",
        tmp_path / "ref.safetensors",
    )
    expected = load_file(str(tmp_path / "ref.safetensors"))["embeddings"]

    with torch.inference_mode():
        ours = loader(weights)(chips)

    assert ours.shape == expected.shape == (3, 512)
    # the weights are not degenerate: the three chips give clearly different embeddings
    cosine = F.normalize(ours, dim=1) @ F.normalize(ours, dim=1).T
    assert cosine.fill_diagonal_(0).abs().max() < 0.99
    diff = (ours - expected).abs().max().item()
    print(f"{kind}: max abs diff {diff:.3e} (embedding max |x| {expected.abs().max():.3f})")
    torch.testing.assert_close(ours, expected, atol=ATOL, rtol=RTOL)
