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
from torch import Tensor

from facecli.models.random_weights import controlled_retinaface_state_dict as _package_state_dict


def calibration_images() -> list[Tensor]:
    """skimage's astronaut (RGB) and camera (grey as RGB), each Tensor[1, 3, 512, 512] float32 0..255."""
    from skimage import data

    astronaut = torch.from_numpy(np.ascontiguousarray(data.astronaut())).permute(2, 0, 1)[None]
    camera = torch.from_numpy(data.camera())[None, None].expand(1, 3, -1, -1)
    return [astronaut.float(), camera.float()]


@torch.no_grad()
def controlled_retinaface_state_dict(
    *,
    seed: int = 0,
    n_faces_hint: int = 3,
    logit_spread: float = 1.5,
    calibration: Sequence[Tensor] | None = None,
) -> dict[str, Tensor]:
    """The package's tamed random state dict, calibrated by default on :func:`calibration_images`.

    See :func:`facecli.models.random_weights.controlled_retinaface_state_dict`.
    """
    images = list(calibration) if calibration is not None else calibration_images()
    return _package_state_dict(images, seed=seed, n_faces_hint=n_faces_hint, logit_spread=logit_spread)


def write_controlled_retinaface(path: str | Path, **options: object) -> Path:
    """Save :func:`controlled_retinaface_state_dict` (``**options``) as safetensors at ``path``."""
    path = Path(path)
    save_file(controlled_retinaface_state_dict(**options), str(path))
    return path
