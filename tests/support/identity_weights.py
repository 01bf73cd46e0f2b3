"""Random-weight files in the published feat-v2 identity layouts, for tests.

``write_random_arcface`` writes what ``py-feat/arcface_r50`` ships (safetensors, 237 tensors,
no ``num_batches_tracked``, no prefix); ``write_random_facenet`` writes what ``py-feat/facenet``
ships (``torch.save`` of a 716-entry state dict).

Freshly initialised BatchNorms (mean 0, variance 1) leave a random deep network with
activations that shrink or grow layer by layer until every input gives the same embedding.
So the running statistics are calibrated on a few smooth random images (as training would
set them), and the affine parameters are then randomised around identity: every layer
matters and embeddings of different faces differ.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from facecli.models.arcface import IResNet
from facecli.models.facenet import InceptionResnetV1


def _calibration_images(generator: torch.Generator, n: int = 4, size: int = 112) -> torch.Tensor:
    """Smooth random RGB images, Tensor[n, 3, size, size] in [0, 1]."""
    coarse = torch.rand(n, 3, 8, 8, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic").clamp(0, 1)


def _calibrate_norms(model: nn.Module, images: torch.Tensor, generator: torch.Generator) -> None:
    """Set BatchNorm running statistics from one batch, then randomise their affine terms."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: one batch sets the statistics exactly
    model.train()
    with torch.no_grad():
        model(images)
    model.eval()
    with torch.no_grad():
        for norm in norms:
            norm.momentum = 0.1
            norm.num_batches_tracked.zero_()
            n = norm.num_features
            norm.weight.copy_(0.8 + 0.4 * torch.rand(n, generator=generator))
            norm.bias.copy_(0.1 * torch.randn(n, generator=generator))


def _build(
    factory: type[nn.Module], seed: int, pixel_scale: float, pixel_shift: float
) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory()
    generator = torch.Generator().manual_seed(seed + 1)
    images = _calibration_images(generator) * pixel_scale + pixel_shift
    _calibrate_norms(model, images, generator)
    return model


def random_arcface_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random IResNet-50 tensors in the published layout (237 entries, no num_batches_tracked)."""
    state = _build(IResNet, seed, pixel_scale=2.0, pixel_shift=-1.0).state_dict()  # [-1, 1] input
    return {k: v.contiguous() for k, v in state.items() if not k.endswith("num_batches_tracked")}


def random_facenet_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random Inception-ResNet-v1 tensors in the published layout (716 entries)."""
    return dict(_build(InceptionResnetV1, seed, pixel_scale=1.0, pixel_shift=0.0).state_dict())


def write_random_arcface(path: str | Path, seed: int = 0) -> Path:
    """Write a random ``arcface_r50.safetensors`` look-alike to ``path``; return the path."""
    path = Path(path)
    save_file(random_arcface_state(seed), str(path))
    return path


def write_random_facenet(path: str | Path, seed: int = 0) -> Path:
    """Write a random ``facenet_20180402_114759_vggface2.pth`` look-alike to ``path``."""
    path = Path(path)
    torch.save(random_facenet_state(seed), str(path))
    return path
