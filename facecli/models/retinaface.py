"""RetinaFace with a ResNet-34 body: the face detector of the feat-v2 model set.

RetinaFace: Deng et al., "RetinaFace: Single-stage Dense Face Localisation in the Wild",
CVPR 2020. The layout (module and parameter names) is that of py-feat 2.1.5's
``py-feat/retinaface_r34`` weights (a port of yakhyo/retinaface-pytorch, MIT), so the published
``model.safetensors`` (older name ``retinaface_r34.safetensors``) loads strictly.

Layout: torchvision ResNet-34 stages 2-4 (strides 8/16/32) -> FPN to 128 channels -> one SSH
context module per level -> 1x1 heads with 2 anchors per cell (class 2, box 4, landmarks 10).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet34

from facecli.models.weights import load_state_dict_strict, read_safetensors
from facecli.ops.boxes import (
    RETINAFACE_VARIANCES,
    decode_boxes,
    decode_landmarks,
    retinaface_priors,
    select_detections,
)
from facecli.types import Detections

#: Per-channel RGB mean subtracted from 0..255 pixels (no scaling by a standard deviation).
RGB_MEAN = (123.0, 117.0, 104.0)
NUM_ANCHORS = 2
NUM_LANDMARKS = 5


def _conv_bn(in_chs: int, out_chs: int, kernel_size: int, relu: bool) -> nn.Sequential:
    """Conv (no bias, 'same' padding) + BatchNorm (+ ReLU); keys ``0.*`` conv, ``1.*`` norm."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_chs, out_chs, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_chs),
    ]
    if relu:  # the published model's LeakyReLU has slope 0 at 128 channels
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ResNetBody(nn.Module):
    """ResNet-34 without pooling/classifier, returning stages 2, 3 and 4.

    Keys match torchvision's ``resnet34`` (``conv1``, ``bn1``, ``layer1``..``layer4``).
    """

    def __init__(self) -> None:
        super().__init__()
        net = resnet34(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: Tensor) -> list[Tensor]:
        """Tensor[B, 3, H, W] -> [B,128,H/8,W/8], [B,256,H/16,W/16], [B,512,H/32,W/32] (ceil)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer2(self.layer1(x))
        c3 = self.layer3(c2)
        return [c2, c3, self.layer4(c3)]


class FPN(nn.Module):
    """Top-down feature pyramid: 1x1 laterals, nearest upsampling, 3x3 merges."""

    def __init__(self, in_chs: tuple[int, int, int] = (128, 256, 512), out_chs: int = 128) -> None:
        super().__init__()
        self.output1 = _conv_bn(in_chs[0], out_chs, 1, relu=True)
        self.output2 = _conv_bn(in_chs[1], out_chs, 1, relu=True)
        self.output3 = _conv_bn(in_chs[2], out_chs, 1, relu=True)
        self.merge1 = _conv_bn(out_chs, out_chs, 3, relu=True)
        self.merge2 = _conv_bn(out_chs, out_chs, 3, relu=True)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        p1, p2, p3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        p2 = self.merge2(p2 + F.interpolate(p3, size=p2.shape[-2:], mode="nearest"))
        p1 = self.merge1(p1 + F.interpolate(p2, size=p1.shape[-2:], mode="nearest"))
        return [p1, p2, p3]


class SSH(nn.Module):
    """Context module: a 3x3 branch (half the channels) and stacked 3x3 branches (a quarter each).

    As in the trained model, the "7x7" branch starts from the output of ``conv5X5_1`` (the
    upstream code recomputes it; computing it once gives the same numbers).
    """

    def __init__(self, in_chs: int = 128, out_chs: int = 128) -> None:
        super().__init__()
        self.conv3X3 = _conv_bn(in_chs, out_chs // 2, 3, relu=False)
        self.conv5X5_1 = _conv_bn(in_chs, out_chs // 4, 3, relu=True)
        self.conv5X5_2 = _conv_bn(out_chs // 4, out_chs // 4, 3, relu=False)
        self.conv7X7_2 = _conv_bn(out_chs // 4, out_chs // 4, 3, relu=True)
        self.conv7x7_3 = _conv_bn(out_chs // 4, out_chs // 4, 3, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        mid = self.conv5X5_1(x)
        branches = [self.conv3X3(x), self.conv5X5_2(mid), self.conv7x7_3(self.conv7X7_2(mid))]
        return F.relu(torch.cat(branches, dim=1))


class Head(nn.Module):
    """One 1x1 conv per pyramid level; outputs of all levels concatenated anchor-major.

    Keys: ``_convs.{level}.weight|bias``.
    """

    def __init__(self, in_chs: int, out_per_anchor: int, num_levels: int = 3) -> None:
        super().__init__()
        self.out_per_anchor = out_per_anchor
        self._convs = nn.ModuleList(
            nn.Conv2d(in_chs, NUM_ANCHORS * out_per_anchor, 1) for _ in range(num_levels)
        )

    def forward(self, feats: list[Tensor]) -> Tensor:
        """Per-level [B, C, h, w] -> Tensor[B, P, out_per_anchor], order level, row, column, anchor."""
        outs = [conv(f).permute(0, 2, 3, 1).flatten(1, 2) for conv, f in zip(self._convs, feats)]
        return torch.cat([o.reshape(o.shape[0], -1, self.out_per_anchor) for o in outs], dim=1)


class RetinaFace(nn.Module):
    """RetinaFace-R34 network (state-dict compatible with ``py-feat/retinaface_r34``)."""

    def __init__(self, width: int = 128) -> None:
        super().__init__()
        self.body = ResNetBody()
        self.fpn = FPN((128, 256, 512), width)
        self.ssh1, self.ssh2, self.ssh3 = SSH(width, width), SSH(width, width), SSH(width, width)
        self.ClassHead = Head(width, 2)
        self.BboxHead = Head(width, 4)
        self.LandmarkHead = Head(width, 2 * NUM_LANDMARKS)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Tensor[B, 3, H, W] -> three [B, width, ceil(H/s), ceil(W/s)] maps, s = 8, 16, 32."""
        p1, p2, p3 = self.fpn(self.body(x))
        return [self.ssh1(p1), self.ssh2(p2), self.ssh3(p3)]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Run the detector heads.

        Args:
            x: Tensor[B, 3, H, W] float32, RGB 0..255 minus :data:`RGB_MEAN`.

        Returns:
            loc: Tensor[B, P, 4] box deltas (see :func:`facecli.ops.boxes.decode_boxes`).
            logits: Tensor[B, P, 2] (background, face) logits; softmax gives probabilities.
            landmarks: Tensor[B, P, 10] landmark deltas (see ``decode_landmarks``).
            P = sum over levels of 2 * ceil(H/s) * ceil(W/s), ordered like ``retinaface_priors``.
        """
        feats = self.forward_features(x)
        return self.BboxHead(feats), self.ClassHead(feats), self.LandmarkHead(feats)


class RetinaFaceDetector(nn.Module):
    """Frames in, :class:`~facecli.types.Detections` out (py-feat 2.1.5 post-processing).

    The detector runs at the frames' own resolution and follows its module's device
    (``detector.to(device)``); frames are moved there.

    Args:
        net: the network, normally with loaded weights.
        score_floor: candidates must score above this before NMS.
        top_k: pre-NMS candidates per image (applied to the batch as a whole, as py-feat does).
        iou_threshold: NMS overlap threshold.
        max_per_image: most faces returned per frame.
    """

    def __init__(
        self,
        net: RetinaFace | None = None,
        *,
        score_floor: float = 0.02,
        top_k: int = 5000,
        iou_threshold: float = 0.4,
        max_per_image: int = 750,
    ) -> None:
        super().__init__()
        self.net = net if net is not None else RetinaFace()
        self.score_floor = score_floor
        self.top_k = top_k
        self.iou_threshold = iou_threshold
        self.max_per_image = max_per_image
        self.register_buffer("mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self._priors: dict[tuple[int, int, torch.device], Tensor] = {}

    def priors(self, height: int, width: int) -> Tensor:
        """Cached :func:`retinaface_priors` on the module's device, Tensor[P, 4]."""
        key = (height, width, self.mean.device)
        if key not in self._priors:
            self._priors[key] = retinaface_priors(height, width, device=self.mean.device)
        return self._priors[key]

    def preprocess(self, frames: Tensor) -> Tensor:
        """Tensor[B, 3, H, W] uint8 or float RGB 0..255 -> float32 minus the mean, on the module's device."""
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be [B, 3, H, W], got {tuple(frames.shape)}")
        return frames.to(self.mean.device, torch.float32) - self.mean

    @torch.inference_mode()
    def detect(self, frames: Tensor, threshold: float = 0.5) -> Detections:
        """Find faces in a batch of same-size frames.

        Args:
            frames: Tensor[B, 3, H, W] uint8 or float RGB in 0..255.
            threshold: keep faces whose probability is >= this.

        Returns:
            Detections with boxes Tensor[N, 4] and landmarks Tensor[N, 5, 2] in frame pixels (not
            clipped), scores Tensor[N], frame Tensor[N] ascending; within a frame, by score
            descending. Tensors live on the module's device.
        """
        x = self.preprocess(frames)
        height, width = x.shape[-2:]
        loc, logits, landmark_deltas = self.net(x)
        scores = logits.softmax(dim=-1)[..., 1]  # [B, P]
        priors = self.priors(height, width)
        scale = torch.tensor([width, height], dtype=torch.float32, device=x.device)
        boxes = decode_boxes(loc, priors, RETINAFACE_VARIANCES) * scale.repeat(2)  # [B, P, 4]
        frame, anchor = select_detections(
            boxes,
            scores,
            threshold=threshold,
            score_floor=self.score_floor,
            top_k=self.top_k,
            iou_threshold=self.iou_threshold,
            max_per_image=self.max_per_image,
        )
        points = decode_landmarks(landmark_deltas[frame, anchor], priors[anchor], RETINAFACE_VARIANCES)
        return Detections(
            boxes=boxes[frame, anchor],
            scores=scores[frame, anchor],
            landmarks=points * scale,
            frame=frame,
        )

    def forward(self, frames: Tensor, threshold: float = 0.5) -> Detections:
        """Same as :meth:`detect`."""
        return self.detect(frames, threshold)


def load_retinaface(path: str | Path, **detector_options: Any) -> RetinaFaceDetector:
    """Build the detector from a ``py-feat/retinaface_r34`` safetensors file (any file name).

    Args:
        path: the weights file; every key (``num_batches_tracked`` included) must match.
        **detector_options: ``score_floor``, ``top_k``, ``iou_threshold``, ``max_per_image`` of
            :class:`RetinaFaceDetector`.

    Returns:
        The detector on the CPU in eval mode.

    Raises:
        WeightsError: the file is missing, unreadable or does not match, naming the key.
    """
    net = RetinaFace()
    tensors, _ = read_safetensors(path)
    load_state_dict_strict(net, tensors, path)
    return RetinaFaceDetector(net, **detector_options).eval()
