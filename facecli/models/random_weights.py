"""Random feat-v2 weight files in the published layouts, for benchmarks and tests.

The real feat-v2 weights come from the Hugging Face Hub; these files have the same keys, shapes
and metadata, so every model builds and runs exactly as with the real files (same compute), while
the outputs are meaningless. Plain random weights give networks whose activations vanish or
explode, or a detector that fires everywhere, so each file is tamed:

* RetinaFace-R34 (:func:`controlled_retinaface_state_dict`): BatchNorm statistics measured on
  calibration images, heads scaled for unit-spread outputs, and the face-logit bias shifted so
  that about ``n_faces_hint`` anchors of the weakest calibration image score above 0.5.
* face_multitask_v2 (:func:`write_random_multitask`): every tensor perturbed around its default
  initialisation, BatchNorm variances in [0.5, 1.5], the mesh biases inside the chip; the config
  is stored as JSON under the metadata key ``"config"``, as the published file does.
* ArcFace IResNet-50 and FaceNet (:func:`write_random_arcface`, :func:`write_random_facenet`):
  BatchNorm statistics calibrated on smooth random images, affines randomised around identity.

:func:`write_featv2_weights` writes a whole ``DIR/<repo_id>/<filename>`` folder (what
``--weights-dir`` reads) - ``facecli bench --random-weights`` uses it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

# Config of the published v2.5-style multitask file and of the v2.8 file (eye-ROI gaze, 6D pose
# input, 180 gaze bins), as stored in their metadata.
V25_CONFIG: dict = {
    "n_au": 20,
    "n_emotion": 7,
    "n_blendshape": 52,
    "mesh_normalized": True,
    "use_head_v3": True,
    "drop_mefl": True,
    "emotion_use_au_prob": True,
    "pretrained": False,
}
V28_CONFIG: dict = {**V25_CONFIG, "gaze_eye_roi": True, "gaze_pose_6d": True, "gaze_bins": 180}


# ------------------------------------------------------------------------------ RetinaFace
def _set_head(head: nn.Module, feats: list[Tensor], spread: float, gen: torch.Generator) -> None:
    """Draw each level's 1x1 conv so that its outputs have about ``spread`` standard deviation."""
    for conv, feat in zip(head._convs, feats):
        rms = feat.pow(2).sum(dim=1).mean().sqrt().clamp_min(1e-6)  # norm of a feature vector
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (spread / rms))
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * 0.1 * spread)


@torch.no_grad()
def controlled_retinaface_state_dict(
    calibration: Sequence[Tensor], *, seed: int = 0, n_faces_hint: int = 3, logit_spread: float = 1.5
) -> dict[str, Tensor]:
    """Tamed random RetinaFace-R34 tensors (all 354 keys of ``py-feat/retinaface_r34``).

    Args:
        calibration: images, each Tensor[1, 3, H, W] float32 RGB 0..255 (sizes may differ).
        seed: random seed (the result is deterministic for a seed and calibration).
        n_faces_hint: anchors scoring above 0.5 (before NMS) on the calibration image that has
            the fewest; the others have at least as many.
        logit_spread: standard deviation of the face-minus-background logit.

    Returns:
        dict of CPU tensors in the published key order.
    """
    from facecli.models.retinaface import RGB_MEAN, RetinaFace

    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # module initialisers use the global generator
        net = RetinaFace()
    mean = torch.tensor(RGB_MEAN).view(1, 3, 1, 1)
    inputs = [image.float() - mean for image in calibration]

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


def write_controlled_retinaface(path: str | Path, calibration: Sequence[Tensor], **options: object) -> Path:
    """Save :func:`controlled_retinaface_state_dict` as safetensors at ``path``."""
    from safetensors.torch import save_file

    path = Path(path)
    save_file(controlled_retinaface_state_dict(calibration, **options), str(path))
    return path


# ------------------------------------------------------------------------------ multitask
@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and float buffer random, numerically tame values, in place.

    Weights are perturbed around their default initialisation; norm scales around 1;
    BatchNorm running statistics are random (variance in [0.5, 1.5]); mesh output biases put
    x, y inside the chip so eye boxes land on the feature map.
    """
    generator = torch.Generator().manual_seed(seed)

    def noise(t: Tensor, scale: float) -> Tensor:
        return torch.randn(t.shape, generator=generator, dtype=t.dtype) * scale

    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            continue
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "running_var":
            tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
        elif leaf == "running_mean" or leaf == "bias":
            tensor.copy_(noise(tensor, 0.05))
        elif tensor.ndim <= 1 and leaf == "weight":  # norm scales (LayerNorm, BatchNorm, GRN, GroupNorm)
            base = 0.0 if ".grn." in name else 1.0
            tensor.copy_(base + noise(tensor, 0.1))
        else:
            tensor.add_(noise(tensor, 0.2 * float(tensor.std()) if tensor.numel() > 1 else 0.1))
    mesh_bias = getattr(getattr(model, "lmk", None), "mlp", None)
    if mesh_bias is not None:
        bias = mesh_bias[-1].bias.view(-1, 3)
        bias[:, :2] = 0.3 + 0.4 * torch.rand(bias[:, :2].shape, generator=generator)
    return model


def write_random_multitask(path: str | Path, config: dict, seed: int = 0) -> Path:
    """Write a random multitask ``.safetensors`` in the published layout (config in the metadata)."""
    from safetensors.torch import save_file

    from facecli.models.multitask import FaceMultitaskV2, MultitaskConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = randomize_(FaceMultitaskV2(MultitaskConfig.from_metadata(config)), seed)
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"config": json.dumps(config)})
    return Path(path)


# ------------------------------------------------------------------------------ identity
def _calibration_noise(generator: torch.Generator, n: int = 4, size: int = 112) -> Tensor:
    """Smooth random RGB images, Tensor[n, 3, size, size] in [0, 1]."""
    coarse = torch.rand(n, 3, 8, 8, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic").clamp(0, 1)


def _calibrate_norms(model: nn.Module, images: Tensor, generator: torch.Generator) -> None:
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


def _build_identity(factory: type[nn.Module], seed: int, pixel_scale: float, pixel_shift: float) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory()
    generator = torch.Generator().manual_seed(seed + 1)
    images = _calibration_noise(generator) * pixel_scale + pixel_shift
    _calibrate_norms(model, images, generator)
    return model


def random_arcface_state(seed: int = 0) -> dict[str, Tensor]:
    """Random IResNet-50 tensors in the published layout (237 entries, no num_batches_tracked)."""
    from facecli.models.arcface import IResNet

    state = _build_identity(IResNet, seed, pixel_scale=2.0, pixel_shift=-1.0).state_dict()  # [-1, 1] input
    return {k: v.contiguous() for k, v in state.items() if not k.endswith("num_batches_tracked")}


def random_facenet_state(seed: int = 0) -> dict[str, Tensor]:
    """Random Inception-ResNet-v1 tensors in the published layout (716 entries)."""
    from facecli.models.facenet import InceptionResnetV1

    return dict(_build_identity(InceptionResnetV1, seed, pixel_scale=1.0, pixel_shift=0.0).state_dict())


def write_random_arcface(path: str | Path, seed: int = 0) -> Path:
    """Write a random ``arcface_r50.safetensors`` look-alike to ``path``; return the path."""
    from safetensors.torch import save_file

    path = Path(path)
    save_file(random_arcface_state(seed), str(path))
    return path


def write_random_facenet(path: str | Path, seed: int = 0) -> Path:
    """Write a random ``facenet_20180402_114759_vggface2.pth`` look-alike (``torch.save``) to ``path``."""
    path = Path(path)
    torch.save(random_facenet_state(seed), str(path))
    return path


# ------------------------------------------------------------------------------ a whole folder
def write_featv2_weights(
    root: str | Path,
    calibration: Sequence[Tensor],
    roles: Sequence[str] = ("retinaface", "multitask", "arcface"),
    seed: int = 0,
    n_faces_hint: int = 1,
) -> Path:
    """Write random weights for ``roles`` as ``ROOT/<repo_id>/<filename>`` (a ``--weights-dir``).

    Args:
        root: the folder (created).
        calibration: images the detector is tamed on, each Tensor[1, 3, H, W] RGB 0..255; pass
            frames of the video to be processed so that faces are found there.
        roles: any of "retinaface", "multitask", "arcface", "facenet".
        seed: random seed of every file.
        n_faces_hint: see :func:`controlled_retinaface_state_dict`.

    Returns:
        ``root``.
    """
    from facecli.models.hub import FEAT_V2_FILES

    root = Path(root)
    writers = {
        "retinaface": lambda p: write_controlled_retinaface(p, calibration, seed=seed, n_faces_hint=n_faces_hint),
        "multitask": lambda p: write_random_multitask(p, V28_CONFIG, seed=seed),
        "arcface": lambda p: write_random_arcface(p, seed=seed),
        "facenet": lambda p: write_random_facenet(p, seed=seed),
    }
    for role in roles:
        wf = FEAT_V2_FILES[role]
        path = root / wf.repo_id / wf.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        writers[role](path)
    return root
