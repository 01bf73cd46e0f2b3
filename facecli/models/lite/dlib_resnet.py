"""dlib's ResNet face embedding (``dlib_face_recognition_resnet_model_v1``) in PyTorch.

The network of dlib's ``dnn_face_recognition_ex``: a 29-convolution ResNet that maps a
150x150 RGB face chip, aligned on five landmarks, to a 128-d descriptor. Two chips of the
same person lie within about 0.6 (Euclidean) of each other; dlib reports 99.38% on LFW.
Weights: Davis King, dlib, released to the public domain (CC0) in face_recognition_models.

dlib's layers map onto PyTorch as follows:

* ``con`` (3x3 or 7x7) followed by ``affine`` (a frozen per-channel scale and shift): one
  ``nn.Conv2d`` with bias; the converter folds the affine into the convolution.
* dlib pads stride-1 convolutions by half the kernel and stride-2 convolutions and pools not at
  all, so spatial sizes run 150 -> 72 -> 35 -> 17 -> 8 -> 4 -> 2.
* A down-sampling block adds its 3x3 stride-2 branch to a 2x2 average pool of its input. When
  channels or sizes differ, dlib's ``add_prev`` adds the two as if the smaller were zero-padded
  at the end of each dimension (channels after, rows below, columns right); :func:`padded_add`
  does the same. It matters at 8x8 -> 3x3 (branch) vs 4x4 (pool), and whenever channels double.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facecli.models.weights import load_safetensors_into, packaged_lite_file
from facecli.ops.align import dlib_chip_affine, warp_chips

CHIP_SIZE = 150
CHIP_PADDING = 0.25
# dlib's input_rgb_image_sized<150>: RGB mean subtracted, then divided by 256.
PIXEL_MEAN = (122.782, 117.001, 104.298)
PIXEL_SCALE = 256.0
WEIGHTS_FILE = "dlib_resnet.safetensors"

# (output channels, stride) of each residual block, input side first.
BLOCKS: tuple[tuple[int, int], ...] = (
    ((32, 1),) * 3 + ((64, 2),) + ((64, 1),) * 3 + ((128, 2),) + ((128, 1),) * 2
    + ((256, 2),) + ((256, 1),) * 2 + ((256, 2),)
)


def padded_add(a: Tensor, b: Tensor) -> Tensor:
    """Sum of two [B, C, H, W] tensors, the smaller zero-padded at the end of each dimension.

    Args:
        a: Tensor[B, Ca, Ha, Wa].
        b: Tensor[B, Cb, Hb, Wb].

    Returns:
        Tensor[B, max(Ca, Cb), max(Ha, Hb), max(Wa, Wb)].
    """
    if a.shape == b.shape:
        return a + b
    shape = [max(x, y) for x, y in zip(a.shape[1:], b.shape[1:])]

    def grow(t: Tensor) -> Tensor:
        c, h, w = t.shape[1:]
        return F.pad(t, (0, shape[2] - w, 0, shape[1] - h, 0, shape[0] - c))

    return grow(a) + grow(b)


class ResidualBlock(nn.Module):
    """conv3x3(stride) -> ReLU -> conv3x3 -> + shortcut -> ReLU (affines folded into the convs).

    The shortcut is the input itself, or a 2x2 average pool of it when ``stride`` is 2.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride, padding=1 if stride == 1 else 0)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, 1, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = F.avg_pool2d(x, 2, 2) if self.stride == 2 else x
        y = self.conv2(F.relu(self.conv1(x)))
        return F.relu(padded_add(y, shortcut))


class DlibResNet(nn.Module):
    """dlib's face-recognition ResNet: [N, 3, 150, 150] normalised RGB -> [N, 128] descriptors."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 7, 2, padding=0)
        blocks, in_chs = [], 32
        for out_chs, stride in BLOCKS:
            blocks.append(ResidualBlock(in_chs, out_chs, stride))
            in_chs = out_chs
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(in_chs, 128, bias=False)

    def forward_features(self, x: Tensor) -> Tensor:
        """Tensor[N, 3, 150, 150] normalised RGB -> Tensor[N, 256, 2, 2] feature map."""
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        return self.blocks(x)

    def forward(self, x: Tensor) -> Tensor:
        """Descriptors of normalised chips.

        Args:
            x: Tensor[N, 3, 150, 150] float32, (RGB - PIXEL_MEAN) / 256.

        Returns:
            Tensor[N, 128] float32 descriptors (not unit length; compare with Euclidean distance).
        """
        return self.head(self.forward_features(x).mean(dim=(2, 3)))


def normalise_chips(chips: Tensor) -> Tensor:
    """Tensor[N, 3, S, S] RGB in 0..255 -> network input (RGB - PIXEL_MEAN) / 256."""
    mean = torch.tensor(PIXEL_MEAN, device=chips.device, dtype=torch.float32)
    return (chips.float() - mean[:, None, None]) / PIXEL_SCALE


class DlibEmbedder:
    """Aligns faces on five points and embeds them with :class:`DlibResNet`."""

    def __init__(self, net: DlibResNet) -> None:
        self.net = net.eval()

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def chips(self, frames: Tensor, frame_idx: Tensor, points5: Tensor) -> Tensor:
        """dlib's aligned 150x150 chips.

        Args:
            frames: Tensor[B, 3, H, W] uint8 RGB.
            frame_idx: Tensor[N] int64 frame of each face.
            points5: Tensor[N, 5, 2] (x, y) frame pixels in dlib's template order (left eye outer,
                left eye inner, right eye outer, right eye inner, nose bottom).

        Returns:
            Tensor[N, 3, 150, 150] float32 RGB in 0..255.
        """
        affine = dlib_chip_affine(points5.to(self.device), CHIP_SIZE, CHIP_PADDING)
        return warp_chips(frames.to(self.device), frame_idx.to(self.device), affine, CHIP_SIZE)

    @torch.inference_mode()
    def embed(self, frames: Tensor, frame_idx: Tensor, points5: Tensor) -> Tensor:
        """128-d identity descriptors of every face.

        Args:
            frames: Tensor[B, 3, H, W] uint8 RGB.
            frame_idx: Tensor[N] int64 frame of each face.
            points5: Tensor[N, 5, 2] (x, y) frame pixels in template order (see :meth:`chips`).

        Returns:
            Tensor[N, 128] float32 on the model's device.
        """
        if points5.shape[0] == 0:
            return torch.zeros(0, 128, device=self.device)
        return self.net(normalise_chips(self.chips(frames, frame_idx, points5)))


def load_dlib_resnet(path: str | Path | None = None, device: torch.device | str = "cpu") -> DlibEmbedder:
    """Build the embedder with the packaged (or given) safetensors weights.

    Args:
        path: weights file; default ``facecli/models/lite/weights/dlib_resnet.safetensors``.
        device: where to run.

    Raises:
        WeightsError: when the file is missing or does not match the architecture.
    """
    net = load_safetensors_into(DlibResNet(), path or packaged_lite_file(WEIGHTS_FILE))
    return DlibEmbedder(net.to(device))
