"""FaceNet identity embedder: Inception-ResNet-v1 trained on VGGFace2.

Papers: Schroff et al., "FaceNet", CVPR 2015; Szegedy et al., "Inception-v4, Inception-ResNet
and the Impact of Residual Connections", AAAI 2017. The published feat-v2 file
(``py-feat/facenet`` / ``facenet_20180402_114759_vggface2.pth``) is the facenet-pytorch port of
David Sandberg's TensorFlow model ``20180402-114759``: a plain ``torch.save`` state dict with 716
entries, including the 8631-way VGGFace2 ``logits`` layer that embedding never uses.

Licence: facenet-pytorch code is MIT; the weights were trained on VGGFace2 (see the model card for
the data terms).

Key names match the file exactly (no prefix).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facecli.models.weights import load_state_dict_strict, read_torch_state_dict

#: side of the square input py-feat feeds FaceNet (it was trained at 160, py-feat uses 112).
INPUT_SIZE = 112
#: number of VGGFace2 training identities (size of the unused ``logits`` layer).
VGGFACE2_CLASSES = 8631
#: TensorFlow's BatchNorm epsilon, kept by the port.
BN_EPS = 1e-3

#: a kernel size or padding, square or (h, w).
Size = int | tuple[int, int]
#: one conv of a branch: (in_chs, out_chs, kernel, stride, padding).
ConvSpec = tuple[int, int, Size, int, Size]


class ConvBnReLU(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU; submodules named ``conv`` and ``bn``."""

    def __init__(
        self, in_chs: int, out_chs: int, kernel: Size, stride: int = 1, padding: Size = 0
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_chs, eps=BN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _branch(specs: Sequence[ConvSpec]) -> nn.Module:
    """One conv as itself, several as an ``nn.Sequential`` (the file's key layout)."""
    convs = [ConvBnReLU(*spec) for spec in specs]
    return convs[0] if len(convs) == 1 else nn.Sequential(*convs)


class InceptionResidual(nn.Module):
    """Inception-ResNet block: parallel conv branches, concat, 1x1 conv (bias), scaled residual.

    ``out = relu(x + scale * conv2d(cat(branch0(x), branch1(x), ...)))`` (ReLU optional).

    Args:
        chs: input = output channels.
        branches: conv specs per branch; ``branch0`` is a single conv.
        scale: residual scale.
        relu: apply the final ReLU.
    """

    def __init__(
        self, chs: int, branches: Sequence[Sequence[ConvSpec]], scale: float, relu: bool = True
    ) -> None:
        super().__init__()
        self.scale = scale
        self.relu = relu
        self.n_branches = len(branches)
        for index, specs in enumerate(branches):
            self.add_module(f"branch{index}", _branch(specs))
        mixed_chs = sum(specs[-1][1] for specs in branches)
        self.conv2d = nn.Conv2d(mixed_chs, chs, 1)

    def forward(self, x: Tensor) -> Tensor:
        mixed = torch.cat([getattr(self, f"branch{i}")(x) for i in range(self.n_branches)], dim=1)
        out = x + self.scale * self.conv2d(mixed)
        return F.relu(out) if self.relu else out


class Reduction(nn.Module):
    """Grid reduction: stride-2 conv branches and a 3x3/2 max-pool, concatenated on channels.

    Args:
        branches: conv specs per conv branch (``branch0``...); the max-pool comes last.
    """

    def __init__(self, branches: Sequence[Sequence[ConvSpec]]) -> None:
        super().__init__()
        self.n_conv = len(branches)
        for index, specs in enumerate(branches):
            self.add_module(f"branch{index}", _branch(specs))

    def forward(self, x: Tensor) -> Tensor:
        outs = [getattr(self, f"branch{i}")(x) for i in range(self.n_conv)]
        return torch.cat([*outs, F.max_pool2d(x, 3, stride=2)], dim=1)


def _block35() -> InceptionResidual:
    return InceptionResidual(
        256,
        [
            [(256, 32, 1, 1, 0)],
            [(256, 32, 1, 1, 0), (32, 32, 3, 1, 1)],
            [(256, 32, 1, 1, 0), (32, 32, 3, 1, 1), (32, 32, 3, 1, 1)],
        ],
        scale=0.17,
    )


def _block17() -> InceptionResidual:
    return InceptionResidual(
        896,
        [
            [(896, 128, 1, 1, 0)],
            [(896, 128, 1, 1, 0), (128, 128, (1, 7), 1, (0, 3)), (128, 128, (7, 1), 1, (3, 0))],
        ],
        scale=0.10,
    )


def _block8(scale: float = 0.20, relu: bool = True) -> InceptionResidual:
    return InceptionResidual(
        1792,
        [
            [(1792, 192, 1, 1, 0)],
            [(1792, 192, 1, 1, 0), (192, 192, (1, 3), 1, (0, 1)), (192, 192, (3, 1), 1, (1, 0))],
        ],
        scale=scale,
        relu=relu,
    )


class InceptionResnetV1(nn.Module):
    """Inception-ResNet-v1 embedding network (plus the unused VGGFace2 ``logits`` layer).

    Args:
        num_classes: size of the ``logits`` layer kept for state-dict compatibility.
    """

    def __init__(self, num_classes: int = VGGFACE2_CLASSES) -> None:
        super().__init__()
        self.conv2d_1a = ConvBnReLU(3, 32, 3, stride=2)
        self.conv2d_2a = ConvBnReLU(32, 32, 3)
        self.conv2d_2b = ConvBnReLU(32, 64, 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = ConvBnReLU(64, 80, 1)
        self.conv2d_4a = ConvBnReLU(80, 192, 3)
        self.conv2d_4b = ConvBnReLU(192, 256, 3, stride=2)
        self.repeat_1 = nn.Sequential(*[_block35() for _ in range(5)])
        self.mixed_6a = Reduction(
            [
                [(256, 384, 3, 2, 0)],
                [(256, 192, 1, 1, 0), (192, 192, 3, 1, 1), (192, 256, 3, 2, 0)],
            ]
        )  # 256 + 384 + 256 = 896 channels
        self.repeat_2 = nn.Sequential(*[_block17() for _ in range(10)])
        self.mixed_7a = Reduction(
            [
                [(896, 256, 1, 1, 0), (256, 384, 3, 2, 0)],
                [(896, 256, 1, 1, 0), (256, 256, 3, 2, 0)],
                [(896, 256, 1, 1, 0), (256, 256, 3, 1, 1), (256, 256, 3, 2, 0)],
            ]
        )  # 384 + 256 + 256 + 896 = 1792 channels
        self.repeat_3 = nn.Sequential(*[_block8() for _ in range(5)])
        self.block8 = _block8(scale=1.0, relu=False)
        self.last_linear = nn.Linear(1792, 512, bias=False)
        self.last_bn = nn.BatchNorm1d(512, eps=BN_EPS)
        self.logits = nn.Linear(512, num_classes)  # classification head; never used for embeddings

    def forward_features(self, x: Tensor) -> Tensor:
        """Args: x (Tensor[N, 3, H, W]) float in [0, 1]. Returns: Tensor[N, 1792, h, w]."""
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.conv2d_4b(self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x))))
        x = self.mixed_7a(self.repeat_2(self.mixed_6a(self.repeat_1(x))))
        return self.block8(self.repeat_3(x))

    def forward_head(self, x: Tensor) -> Tensor:
        """Args: x (Tensor[N, 1792, h, w]). Returns: Tensor[N, 512] L2-normalised embeddings."""
        x = self.last_bn(self.last_linear(x.mean(dim=(2, 3))))
        return F.normalize(x.float(), p=2, dim=1)  # float32 even under bfloat16 autocast: unit length

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class FaceNetEmbedder(nn.Module):
    """Identity embeddings from 256x256 face chips, preprocessed as py-feat's Detectorv2 does.

    The chip is resized to 112x112 (bilinear, no antialias, half-pixel centres) and fed in [0, 1]
    without further normalisation.
    """

    def __init__(self) -> None:
        super().__init__()
        self.net = InceptionResnetV1()

    def forward(self, chips: Tensor) -> Tensor:
        """Embed face chips.

        Args:
            chips: Tensor[N, 3, H, W] float RGB in [0, 1] (H = W = 256 in the pipeline).

        Returns:
            Tensor[N, 512] float embeddings, L2-normalised.
        """
        if chips.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            chips = F.interpolate(
                chips, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False
            )
        return self.net(chips)


def load_facenet(path: str | Path, device: torch.device | str = "cpu") -> FaceNetEmbedder:
    """Build a :class:`FaceNetEmbedder` and load the ``.pth`` state dict strictly.

    Args:
        path: the torch state dict (716 entries), read with ``weights_only=True``.
        device: where to put the model.

    Returns:
        The embedder in eval mode.

    Raises:
        WeightsError: when the file is missing, unreadable or any key/shape does not match.
    """
    model = FaceNetEmbedder()
    load_state_dict_strict(model.net, read_torch_state_dict(path), path)
    return model.eval().to(device)
