"""Random RetinaFace-R34 weights in the published layout, with controllable face scores.

Plain random weights give a detector that fires everywhere (or nowhere). These weights are
random but tamed so that tests see realistic output:

- BatchNorm affine parameters are randomised, then the running statistics are measured on
  calibration images (forward passes in training mode, cumulative average), so activations
  stay near unit scale at every depth; ``num_batches_tracked`` is 1.
- The head weights are drawn so that box and landmark deltas have about unit spread and the
  face-minus-background logit has a spread of about ``logit_spread`` on the calibration images.
- The face logit bias is then shifted so that ``n_faces_hint`` anchors of the weakest
  calibration image score above 0.5 (before NMS), with the 0.5 boundary placed midway in the
  gap between two anchors' scores.

How many faces survive NMS varies a lot between images (defaults: about 16 on the astronaut,
3 on the camera image at 512x512, none on some other images). A test that needs detections on
its own frames should pass them as ``calibration``.

The file has all 354 keys of ``py-feat/retinaface_r34`` (``num_batches_tracked`` included) and
is loaded by both facecli and py-feat in the parity tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from facecli.models.retinaface import RGB_MEAN, RetinaFace


def calibration_images() -> list[Tensor]:
    """skimage's astronaut (RGB) and camera (grey as RGB), each Tensor[1, 3, 512, 512] float32 0..255."""
    from skimage import data

    astronaut = torch.from_numpy(np.ascontiguousarray(data.astronaut())).permute(2, 0, 1)[None]
    camera = torch.from_numpy(data.camera())[None, None].expand(1, 3, -1, -1)
    return [astronaut.float(), camera.float()]


def _set_head(head: nn.Module, feats: list[Tensor], spread: float, gen: torch.Generator) -> None:
    """Draw each level's 1x1 conv so that its outputs have about ``spread`` standard deviation."""
    for conv, feat in zip(head._convs, feats):
        rms = feat.pow(2).sum(dim=1).mean().sqrt().clamp_min(1e-6)  # norm of a feature vector
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (spread / rms))
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * 0.1 * spread)


@torch.no_grad()
def controlled_retinaface_state_dict(
    *,
    seed: int = 0,
    n_faces_hint: int = 3,
    logit_spread: float = 1.5,
    calibration: Sequence[Tensor] | None = None,
) -> dict[str, Tensor]:
    """Build the tamed random state dict.

    Args:
        seed: random seed (the result is deterministic for a seed).
        n_faces_hint: anchors scoring above 0.5 (before NMS) on the calibration image that has
            the fewest; the others have at least as many.
        logit_spread: standard deviation of the face-minus-background logit.
        calibration: images, each Tensor[1, 3, H, W] float32 RGB 0..255 (sizes may differ);
            default :func:`calibration_images`.

    Returns:
        dict of 354 CPU tensors in the published key order.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # module initialisers use the global generator
    net = RetinaFace()
    images = list(calibration) if calibration is not None else calibration_images()
    mean = torch.tensor(RGB_MEAN).view(1, 3, 1, 1)
    inputs = [image - mean for image in images]

    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.weight.copy_(0.5 + torch.rand(norm.num_features, generator=gen))
        norm.bias.copy_(0.1 * torch.randn(norm.num_features, generator=gen))
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average of the calibration batches
    net.train()
    for x in inputs:
        net.forward_features(x)
    net.eval()
    for norm in norms:
        norm.momentum = 0.1
        norm.num_batches_tracked.fill_(1)

    feats = [net.forward_features(x) for x in inputs]
    pooled = [torch.cat([f[level].flatten(2) for f in feats], dim=2)[..., None] for level in range(3)]
    _set_head(net.BboxHead, pooled, 1.0, gen)
    _set_head(net.LandmarkHead, pooled, 1.0, gen)
    _set_head(net.ClassHead, pooled, logit_spread / 2**0.5, gen)

    # Face-minus-background logit per anchor, sorted, for the calibration image with the fewest
    # high-scoring anchors; place the 0.5 boundary between its n-th and (n+1)-th anchors.
    margins = []
    for f in feats:
        logits = net.ClassHead(f)[0]  # [P, 2]
        margins.append((logits[:, 1] - logits[:, 0]).sort(descending=True).values)
    n = max(1, min([n_faces_hint] + [m.numel() - 1 for m in margins]))
    weakest = min(margins, key=lambda m: float(m[n - 1]))
    shift = -float(weakest[n - 1] + weakest[n]) / 2
    for conv in net.ClassHead._convs:
        conv.bias[1::2] += shift  # channels (background, face) per anchor
    return {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}


def write_controlled_retinaface(path: str | Path, **options: object) -> Path:
    """Save :func:`controlled_retinaface_state_dict` (``**options``) as safetensors at ``path``."""
    path = Path(path)
    save_file(controlled_retinaface_state_dict(**options), str(path))
    return path
