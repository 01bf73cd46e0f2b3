"""ArcFace identity embedder: InsightFace's IResNet-50 (``w600k_r50``) in fused-BN form.

Paper: Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR 2019.
The published feat-v2 file (``py-feat/arcface_r50`` / ``arcface_r50.safetensors``) is the
InsightFace ``buffalo_l`` ONNX graph converted to PyTorch: every BatchNorm that directly follows
a convolution was folded into that convolution's weight and bias, so only three kinds of
normalisation survive - ``bn1`` at the input of each residual block, ``bn2`` after the last stage
and the 1-D ``features`` norm after the embedding layer.

Licence: the architecture is InsightFace's (MIT code); the trained weights are released by
InsightFace for non-commercial research use only (WebFace600K training data).

Key names match the file exactly (no prefix); the file leaves out ``num_batches_tracked``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facecli.models.weights import load_state_dict_strict, read_safetensors

#: side of the square input the network was trained on, pixels.
INPUT_SIZE = 112
#: residual blocks per stage of IResNet-50.
R50_LAYERS = (3, 4, 14, 3)
#: output channels per stage.
STAGE_CHS = (64, 128, 256, 512)


class FusedIBasicBlock(nn.Module):
    """Improved residual block with its inner BatchNorms folded into the convolutions.

    ``out = conv2(prelu(conv1(bn1(x)))) + shortcut(x)``; the stride sits on ``conv2`` and on the
    1x1 ``downsample`` shortcut (present whenever the shape changes).

    Args:
        in_chs: input channels.
        out_chs: output channels.
        stride: spatial stride of the block (1 or 2).
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_chs, eps=1e-5)
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, padding=1, bias=True)
        self.prelu = nn.PReLU(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, stride=stride, padding=1, bias=True)
        needs_projection = stride != 1 or in_chs != out_chs
        self.downsample = (
            nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=True) if needs_projection else None
        )

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.conv2(self.prelu(self.conv1(self.bn1(x)))) + shortcut


class IResNet(nn.Module):
    """Fused-BN IResNet backbone + embedding head.

    Args:
        layers: blocks per stage; (3, 4, 14, 3) is IResNet-50.
        embed_dim: embedding size.
        input_size: square input side in pixels; four stride-2 stages reduce it by 16.
    """

    def __init__(
        self,
        layers: tuple[int, ...] = R50_LAYERS,
        embed_dim: int = 512,
        input_size: int = INPUT_SIZE,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, STAGE_CHS[0], 3, padding=1, bias=True)  # stem BN folded in
        self.prelu = nn.PReLU(STAGE_CHS[0])
        in_chs = STAGE_CHS[0]
        for index, (depth, out_chs) in enumerate(zip(layers, STAGE_CHS), start=1):
            # the first block of every stage halves the resolution: 112 -> 56 -> 28 -> 14 -> 7
            blocks = [FusedIBasicBlock(in_chs, out_chs, stride=2)]
            blocks += [FusedIBasicBlock(out_chs, out_chs) for _ in range(depth - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
            in_chs = out_chs
        side = input_size // 16
        self.bn2 = nn.BatchNorm2d(in_chs, eps=1e-5)
        self.fc = nn.Linear(in_chs * side * side, embed_dim)
        self.features = nn.BatchNorm1d(embed_dim, eps=1e-5)

    def forward_features(self, x: Tensor) -> Tensor:
        """Args: x (Tensor[N, 3, 112, 112]) in [-1, 1]. Returns: Tensor[N, 512, 7, 7]."""
        x = self.prelu(self.conv1(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.bn2(x)

    def forward_head(self, x: Tensor) -> Tensor:
        """Args: x (Tensor[N, 512, 7, 7]). Returns: Tensor[N, embed_dim], not normalised."""
        return self.features(self.fc(x.flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class ArcFaceEmbedder(nn.Module):
    """Identity embeddings from 256x256 face chips.

    The chip is resized to 112x112 (bilinear, no antialias, half-pixel centres) and mapped from
    [0, 1] to [-1, 1] before the network, as in py-feat's Detectorv2.
    """

    def __init__(self) -> None:
        super().__init__()
        self.net = IResNet()

    def forward(self, chips: Tensor) -> Tensor:
        """Embed face chips.

        Args:
            chips: Tensor[N, 3, H, W] float RGB in [0, 1] (H = W = 256 in the pipeline).

        Returns:
            Tensor[N, 512] float embeddings, NOT L2-normalised (compare with cosine similarity).
        """
        if chips.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            chips = F.interpolate(
                chips, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False
            )
        return self.net(chips * 2.0 - 1.0)


def load_arcface(path: str | Path, device: torch.device | str = "cpu") -> ArcFaceEmbedder:
    """Build an :class:`ArcFaceEmbedder` and load ``arcface_r50.safetensors`` strictly.

    Args:
        path: the safetensors file (keys without prefix, ``num_batches_tracked`` may be absent).
        device: where to put the model.

    Returns:
        The embedder in eval mode.

    Raises:
        WeightsError: when the file is missing, unreadable or any key/shape does not match.
    """
    model = ArcFaceEmbedder()
    tensors, _ = read_safetensors(path)
    load_state_dict_strict(model.net, tensors, path, ignore_missing=("num_batches_tracked",))
    return model.eval().to(device)
