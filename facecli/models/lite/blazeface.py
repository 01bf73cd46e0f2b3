"""BlazeFace face detector (MediaPipe short-range and full-range models) in PyTorch.

BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs (Bazarevsky et al., 2019).
Weights are converted from MediaPipe 0.10.21's ``face_detection_short_range.tflite`` and
``face_detection_full_range_sparse.tflite`` (Apache-2.0) by ``scripts/convert_lite.py``.

Pipeline, following MediaPipe's face detection graph:

* letterbox the frame to a square ``S x S`` (128 short, 192 full) keeping the aspect ratio, the
  square centred on the frame, bilinear sampling, black border; scale to ``x / 127.5 - 1``;
* run the network: per anchor 16 regressors and one score logit;
* decode against fixed-size anchors, keep ``sigmoid(clip(logit, +-100)) >= threshold``
  (MediaPipe's: 0.5 short range, 0.6 full range);
* weighted non-maximum suppression (IoU > 0.3 clusters, members averaged by score);
* map normalised letterbox coordinates back to frame pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facecli.models.lite.layers import Conv2dSame, add_shortcut
from facecli.models.weights import load_safetensors_into, packaged_lite_file
from facecli.types import Detections

NUM_KEYPOINTS = 6  # right eye, left eye, nose tip, mouth, right ear tragion, left ear tragion

# variant -> (input size, anchor strides: one SSD layer per entry, anchors per cell per layer)
VARIANTS: dict[str, tuple[int, tuple[int, ...], int]] = {
    "short": (128, (8, 16, 16, 16), 2),
    "full": (192, (4,), 1),
}
# MediaPipe's own score thresholds (its graphs fix them; checked against mediapipe 0.10.21's outputs).
DEFAULT_THRESHOLD = {"short": 0.5, "full": 0.6}


# ----------------------------------------------------------------------------- blocks
class BlazeBlock(nn.Module):
    """Short-range block: depthwise 3x3 -> pointwise 1x1, plus a max-pooled, zero-channel-padded skip, ReLU."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        # 'SAME' for a 3x3 stride-1 conv is one pixel on every side: Conv2d's own padding, no copy
        self.dw = Conv2dSame(in_chs, in_chs, 3, stride, groups=in_chs) if stride == 2 else nn.Conv2d(
            in_chs, in_chs, 3, 1, 1, groups=in_chs
        )
        self.pw = nn.Conv2d(in_chs, out_chs, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.pw(self.dw(x))
        if self.stride == 2:
            x = F.max_pool2d(x, 2, 2, ceil_mode=True)  # TF 'SAME' 2x2/2 max pool
        return F.relu_(add_shortcut(y, x))  # in place: y is this block's own fresh tensor


class Bottleneck(nn.Module):
    """Full-range block: dw 3x3 -> 1x1 (ReLU) -> dw 3x3 -> 1x1, residual when shapes match, ReLU."""

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, stride: int = 1) -> None:
        super().__init__()
        self.residual = stride == 1 and in_chs == out_chs
        self.dw1 = nn.Conv2d(in_chs, in_chs, 3, stride, 1, groups=in_chs)
        self.pw1 = nn.Conv2d(in_chs, mid_chs, 1)
        self.dw2 = nn.Conv2d(mid_chs, mid_chs, 3, 1, 1, groups=mid_chs)
        self.pw2 = nn.Conv2d(mid_chs, out_chs, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.pw2(self.dw2(F.relu(self.pw1(self.dw1(x)))))
        return F.relu(x + y if self.residual else y)


def _stage(chs: int, mid_chs: int, depth: int) -> nn.Sequential:
    return nn.Sequential(*[Bottleneck(chs, mid_chs, chs) for _ in range(depth)])


def _to_anchor_rows(x: Tensor, per_anchor: int) -> Tensor:
    """Tensor[B, C, H, W] -> Tensor[B, H*W*C/per_anchor, per_anchor] in TF's NHWC reshape order."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, per_anchor)


def _depth_to_space_rows(x: Tensor, block: int) -> Tensor:
    """TF DEPTH_TO_SPACE of Tensor[B, block*block*C, H, W], flattened to Tensor[B, H*W*block*block, C]."""
    b, c, h, w = x.shape
    out_c = c // (block * block)
    x = x.reshape(b, block, block, out_c, h, w)  # TF channel index = (i * block + j) * C + c
    return x.permute(0, 4, 1, 5, 2, 3).reshape(b, h * block * w * block, out_c)


class ShortRangeNet(nn.Module):
    """BlazeFace short range: 128x128 input, 16x16x2 + 8x8x6 = 896 anchors."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = Conv2dSame(3, 24, 5, 2)
        chs16 = [(24, 24, 1), (24, 28, 1), (28, 32, 2), (32, 36, 1), (36, 42, 1), (42, 48, 2),
                 (48, 56, 1), (56, 64, 1), (64, 72, 1), (72, 80, 1), (80, 88, 1)]  # fmt: skip
        self.blocks16 = nn.Sequential(*[BlazeBlock(i, o, s) for i, o, s in chs16])
        self.blocks8 = nn.Sequential(BlazeBlock(88, 96, 2), *[BlazeBlock(96, 96) for _ in range(4)])
        self.cls16 = nn.Conv2d(88, 2, 1)
        self.cls8 = nn.Conv2d(96, 6, 1)
        self.reg16 = nn.Conv2d(88, 2 * 16, 1)
        self.reg8 = nn.Conv2d(96, 6 * 16, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f16 = self.blocks16(F.relu_(self.stem(x)))
        f8 = self.blocks8(f16)
        logits = torch.cat([_to_anchor_rows(self.cls16(f16), 1), _to_anchor_rows(self.cls8(f8), 1)], 1)
        regs = torch.cat([_to_anchor_rows(self.reg16(f16), 16), _to_anchor_rows(self.reg8(f8), 16)], 1)
        return regs, logits[..., 0]


class FullRangeNet(nn.Module):
    """BlazeFace full range: 192x192 input, feature pyramid down to 6x6, 48x48 = 2304 anchors."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, 2, 1)
        self.stage96 = _stage(32, 8, 2)
        self.down48, self.stage48, self.lateral48 = Bottleneck(32, 16, 64, 2), _stage(64, 16, 2), nn.Conv2d(64, 48, 1)
        self.down24, self.stage24, self.lateral24 = Bottleneck(64, 32, 128, 2), _stage(128, 32, 2), nn.Conv2d(128, 64, 1)
        self.down12, self.stage12, self.lateral12 = Bottleneck(128, 48, 192, 2), _stage(192, 48, 2), nn.Conv2d(192, 96, 1)
        self.down6, self.stage6 = Bottleneck(192, 96, 384, 2), _stage(384, 96, 3)
        self.top6, self.fuse12 = nn.Conv2d(384, 96, 1), _stage(96, 48, 2)
        self.top12, self.fuse24 = nn.Conv2d(96, 64, 1), _stage(64, 32, 2)
        self.top24, self.fuse48 = nn.Conv2d(64, 48, 1), _stage(48, 24, 1)
        self.cls_pw, self.cls_dw = nn.Conv2d(48, 4, 1), nn.Conv2d(4, 4, 3, 2, 1, groups=4)
        self.reg_pw, self.reg_dw = nn.Conv2d(48, 64, 1), nn.Conv2d(64, 64, 3, 2, 1, groups=64)

    @staticmethod
    def _up(x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)  # TF half-pixel

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        c96 = self.stage96(F.relu(self.stem(x)))
        c48 = self.stage48(self.down48(c96))
        l48 = F.relu(self.lateral48(c48))
        c24 = self.stage24(self.down24(c48))
        l24 = F.relu(self.lateral24(c24))
        c12 = self.stage12(self.down12(c24))
        l12 = F.relu(self.lateral12(c12))
        c6 = self.stage6(self.down6(c12))
        p12 = self.fuse12(self._up(F.relu(self.top6(c6))) + l12)
        p24 = self.fuse24(self._up(F.relu(self.top12(p12))) + l24)
        p48 = self.fuse48(self._up(F.relu(self.top24(p24))) + l48)
        logits = _depth_to_space_rows(self.cls_dw(self.cls_pw(p48)), 2)
        regs = _depth_to_space_rows(self.reg_dw(self.reg_pw(p48)), 2)
        return regs, logits[..., 0]


# ----------------------------------------------------------------------------- geometry
def generate_anchors(input_size: int, strides: tuple[int, ...], per_cell: int) -> Tensor:
    """Centres of MediaPipe's fixed-size SSD anchors.

    Consecutive layers with the same stride share one feature map; each layer adds ``per_cell``
    anchors per cell (all of size 1, so only the centres matter).

    Args:
        input_size: network input side in pixels.
        strides: stride of each SSD layer.
        per_cell: anchors per cell contributed by each layer.

    Returns:
        Tensor[A, 2] float32 (cx, cy) normalised to [0, 1], in the network's output order.
    """
    return anchor_pixels(input_size, input_size, strides, per_cell) / input_size


def anchor_pixels(height: int, width: int, strides: tuple[int, ...], per_cell: int) -> Tensor:
    """Anchor centres of a BlazeFace network run on a ``height x width`` input, in input pixels.

    The networks are fully convolutional; on an input other than their own square, each SSD layer
    has a ``ceil(height / stride) x ceil(width / stride)`` grid, laid out as :func:`generate_anchors`
    lays out the square one (for a square input ``anchor_pixels(S, S, ...) / S`` equals it).

    Args:
        height, width: input size in pixels (multiples of the largest stride).
        strides: stride of each SSD layer.
        per_cell: anchors per cell contributed by each layer.

    Returns:
        Tensor[A, 2] float32 (cx, cy) input pixels, in the network's output order.
    """
    centres = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        step = strides[i]
        ys = (torch.arange(math.ceil(height / step), dtype=torch.float32) + 0.5) * step
        xs = (torch.arange(math.ceil(width / step), dtype=torch.float32) + 0.5) * step
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([cx, cy], -1).reshape(-1, 1, 2)
        centres.append(grid.expand(-1, (j - i) * per_cell, 2).reshape(-1, 2))
        i = j
    return torch.cat(centres)


def decode(regressors: Tensor, anchors: Tensor, input_size: int) -> tuple[Tensor, Tensor]:
    """Turn raw regressors into boxes and keypoints, normalised to the letterboxed input.

    Args:
        regressors: Tensor[..., A, 16]: cx, cy offsets, w, h, then 6 keypoint (x, y) offsets, input pixels.
        anchors: Tensor[A, 2] anchor centres in [0, 1].
        input_size: network input side in pixels.

    Returns:
        boxes Tensor[..., A, 4] (x1, y1, x2, y2) and keypoints Tensor[..., A, 6, 2] (x, y), both in [0, 1] units.
    """
    r = regressors / input_size
    centre = r[..., 0:2] + anchors
    half = r[..., 2:4] / 2
    boxes = torch.cat([centre - half, centre + half], -1)
    keypoints = r[..., 4:].unflatten(-1, (NUM_KEYPOINTS, 2)) + anchors[:, None, :]
    return boxes, keypoints


def _iou_one(box: Tensor, boxes: Tensor) -> Tensor:
    """IoU of Tensor[4] against Tensor[N, 4], (x1, y1, x2, y2); 0 where the union is empty."""
    lt = torch.maximum(box[:2], boxes[:, :2])
    rb = torch.minimum(box[2:], boxes[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = (box[2:] - box[:2]).prod() + (boxes[:, 2:] - boxes[:, :2]).prod(-1) - inter
    return torch.where(union > 0, inter / union, torch.zeros_like(inter))


def weighted_nms(boxes: Tensor, scores: Tensor, keypoints: Tensor, iou_threshold: float = 0.3) -> tuple[Tensor, Tensor, Tensor]:
    """MediaPipe's weighted non-maximum suppression for one image.

    Repeatedly take the best remaining detection; every remaining detection whose IoU with it is
    above ``iou_threshold`` (itself included) joins its cluster and leaves the pool. The cluster's
    box corners and keypoints are the score-weighted mean of its members; its score is the best one.

    Args:
        boxes: Tensor[N, 4] (x1, y1, x2, y2).
        scores: Tensor[N].
        keypoints: Tensor[N, K, 2].
        iou_threshold: clustering threshold.

    Returns:
        (boxes Tensor[M, 4], scores Tensor[M], keypoints Tensor[M, K, 2]), best score first.
    """
    order = torch.argsort(scores, descending=True, stable=True)
    boxes, scores, keypoints = boxes[order], scores[order], keypoints[order]
    remaining = torch.arange(len(scores), device=scores.device)
    out_boxes, out_scores, out_points = [], [], []
    while remaining.numel() > 0:  # one iteration per output face
        members = _iou_one(boxes[remaining[0]], boxes[remaining]) > iou_threshold
        members[0] = True  # guards degenerate (zero-area) boxes; MediaPipe always clusters the top one
        idx = remaining[members]
        w = scores[idx]
        out_boxes.append((boxes[idx] * w[:, None]).sum(0) / w.sum())
        out_points.append((keypoints[idx] * w[:, None, None]).sum(0) / w.sum())
        out_scores.append(scores[idx[0]])
        remaining = remaining[~members]
    if not out_scores:
        return boxes[:0], scores[:0], keypoints[:0]
    return torch.stack(out_boxes), torch.stack(out_scores), torch.stack(out_points)


def warp_taps(pos: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """Source indices Tensor[..., 2] int64 and weights Tensor[..., 2] float32 of 1-D bilinear sampling.

    ``pos`` (Tensor[...], pixels, centres at integers) is first rounded to 1/32 pixel as OpenCV's
    fixed-point warp does; taps outside ``[0, length)`` get weight 0 (constant zero border).
    """
    pos = torch.round(pos * 32) / 32
    first = torch.floor(pos)
    frac = (pos - first).float()
    index = first.long()[..., None] + torch.arange(2, device=pos.device)
    weight = torch.stack([1 - frac, frac], -1) * ((index >= 0) & (index < length))
    return index.clamp(0, length - 1), weight


def letterbox(frames: Tensor, size: int) -> tuple[Tensor, Tensor, float]:
    """Letterbox frames to the network input as MediaPipe's CPU image-to-tensor step does.

    The square region of side ``max(H, W)`` centred on the frame is mapped onto ``size x size``
    pixels with output pixel ``d`` sampling source position ``origin + d * side / size``
    (OpenCV warp convention, pixel centres at integers). As in OpenCV's fixed-point warp, source
    positions are rounded to 1/32 pixel and the bilinear result (zero outside the frame) is
    rounded half up to an integer; then scaled to ``x / 127.5 - 1``.

    Args:
        frames: Tensor[B, 3, H, W] uint8 RGB.
        size: output side in pixels.

    Returns:
        (inputs Tensor[B, 3, size, size] float32 in [-1, 1], origin Tensor[2] (x, y) frame pixels of the
        square's top-left corner, side of the square in frame pixels). A normalised letterbox point
        ``u`` maps to frame pixels as ``origin + u * side``.
    """
    b, _, h, w = frames.shape
    side = float(max(h, w))
    origin = torch.tensor([(w - side) / 2, (h - side) / 2], dtype=torch.float64, device=frames.device)
    steps = torch.arange(size, dtype=torch.float64, device=frames.device) * (side / size)
    ys, wy = warp_taps(origin[1] + steps, h)
    xs, wx = warp_taps(origin[0] + steps, w)
    taps = frames.index_select(2, ys.flatten()).index_select(3, xs.flatten())  # [B, 3, 2*size, 2*size] uint8
    taps = taps.float().view(b, 3, size, 2, size, 2)
    pixels = (taps * wx.view(size, 2)).sum(-1)  # [B, 3, size, 2, size]
    pixels = (pixels * wy.view(size, 2, 1)).sum(-2)  # [B, 3, size, size]
    return torch.floor(pixels + 0.5) / 127.5 - 1.0, origin.float(), side  # uint8 warp rounds half up


# ----------------------------------------------------------------------------- model + detector
class BlazeFace(nn.Module):
    """BlazeFace network with its anchors.

    Args:
        variant: "short" (128x128, 896 anchors) or "full" (192x192, 2304 anchors).
    """

    def __init__(self, variant: str = "short") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown BlazeFace variant {variant!r}; choose from {sorted(VARIANTS)}")
        self.variant = variant
        self.input_size, strides, per_cell = VARIANTS[variant]
        self.net = ShortRangeNet() if variant == "short" else FullRangeNet()
        self.register_buffer("anchors", generate_anchors(self.input_size, strides, per_cell), persistent=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Raw outputs.

        Args:
            x: Tensor[B, 3, S, S] float32 RGB in [-1, 1], S = ``input_size``.

        Returns:
            regressors Tensor[B, A, 16] (input pixels, relative to anchors) and logits Tensor[B, A].
        """
        return self.net(x)


class BlazeFaceDetector(nn.Module):
    """Frames in, :class:`facecli.types.Detections` out.

    Args:
        model: a BlazeFace network with loaded weights.
        iou_threshold: weighted-NMS clustering threshold (MediaPipe uses 0.3).
    """

    def __init__(self, model: BlazeFace, iou_threshold: float = 0.3) -> None:
        super().__init__()
        self.model = model.eval().to(memory_format=torch.channels_last)  # faster depthwise convs on CPU
        self.iou_threshold = iou_threshold

    @torch.inference_mode()
    def detect(self, frames: Tensor, threshold: float | None = None) -> Detections:
        """Detect faces in a batch of frames.

        Args:
            frames: Tensor[B, 3, H, W] uint8 RGB.
            threshold: minimum score in [0, 1] of the anchors that enter suppression; None uses
                MediaPipe's value for the variant (0.5 short range, 0.6 full range).

        Returns:
            Detections with boxes (x1, y1, x2, y2) and 6 keypoints in frame pixels, frame index ascending,
            best score first within a frame.
        """
        if threshold is None:
            threshold = DEFAULT_THRESHOLD[self.model.variant]
        device = self.model.anchors.device
        inputs, origin, side = letterbox(frames.to(device), self.model.input_size)
        regressors, logits = self.model(inputs.contiguous(memory_format=torch.channels_last))
        scores = torch.sigmoid(logits.clamp(-100.0, 100.0))
        boxes, keypoints = decode(regressors, self.model.anchors, self.model.input_size)
        keep = (scores >= threshold) & (boxes[..., 2] >= boxes[..., 0]) & (boxes[..., 3] >= boxes[..., 1])
        parts: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
        for i in range(frames.shape[0]):  # loop per image; NMS loops per output face
            k = keep[i]
            if not bool(k.any()):
                continue
            b, s, p = weighted_nms(boxes[i][k], scores[i][k], keypoints[i][k], self.iou_threshold)
            parts.append((b, s, p, torch.full((len(s),), i, dtype=torch.long, device=device)))
        if not parts:
            return Detections.empty(NUM_KEYPOINTS, device=device)
        b, s, p, f = (torch.cat(t) for t in zip(*parts))
        return Detections(
            boxes=(b * side + origin.repeat(2)).float(),
            scores=s.float(),
            landmarks=(p * side + origin).float(),
            frame=f,
        )


def load_blazeface(variant: str = "short", device: torch.device | str = "cpu") -> BlazeFaceDetector:
    """Build the detector with the packaged weights (``facecli/models/lite/weights/blazeface_<variant>.safetensors``).

    Args:
        variant: "short" (faces within ~2 m, default) or "full" (faces within ~5 m, smaller faces).
        device: where to run.

    Raises:
        WeightsError: when the weight file is missing or does not match the architecture.
    """
    model = load_safetensors_into(BlazeFace(variant), packaged_lite_file(f"blazeface_{variant}.safetensors"))
    return BlazeFaceDetector(model).to(device)
