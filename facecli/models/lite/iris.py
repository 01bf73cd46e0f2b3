"""MediaPipe iris landmarks as a PyTorch module, and the 468 -> 478 mesh refinement.

Architecture and weights from MediaPipe's ``iris_landmark.tflite`` (Apache-2.0; Ablavatski et
al., "Real-time Pupil Tracking from Monocular Video for Digital Puppetry", 2020), converted by
``scripts/lite_convert/iris.py``. Input: a 64x64 RGB eye crop in [0, 1]. Outputs, in crop
pixels: 71 eye-contour/brow points and 5 iris points (centre, then four points on the iris
edge), each (x, y, z).

The model was trained on one eye (the eye between mesh corners 33 and 133, on the image's left
for an upright face); the other eye (362 -> 263) is cropped mirrored and its outputs mirrored
back, as MediaPipe's iris graph does.

Output order of :func:`refine_with_iris` follows MediaPipe's 478-point topology (as produced by
``refine_landmarks=True``): 468-472 iris of the 33/133 eye, 473-477 iris of the 362/263 eye, each
as centre, then the edge points towards image right, up, image left, down.

z of the iris points: the iris model's depths are relative to its own eye crop, so they are
re-anchored on the mesh: z = (mean mesh z of the eye's 16 contour landmarks) + (iris model z
minus its iris-centre z) * side / 64, in the same frame-pixel units as the mesh's z.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from facecli.models.lite.layers import Conv2dSame, add_shortcut
from facecli.models.weights import load_safetensors_into, packaged_lite_file
from facecli.ops.roi import crop_to_frame, roi_affine, segment_roi, warp_crops

INPUT_SIZE = 64
NUM_CONTOUR = 71
NUM_IRIS = 5
ROI_SCALE = 2.3
# eye corners (start -> end, image-left to image-right for an upright face) and eye rings
EYE_CORNERS = ((33, 133), (362, 263))
EYE_RINGS = (
    (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246),
    (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466),
)
# mirrored eye: model order (centre, +u, up, -u, down) -> image order (centre, right, up, left, down)
_MIRRORED_ORDER = (0, 3, 2, 1, 4)


class BottleneckBlock(nn.Module):
    """Reduce (1x1, or 2x2 stride 2) -> PReLU -> depthwise 3x3 -> expand 1x1, plus shortcut, PReLU.

    Args:
        in_chs: input channels.
        mid_chs: channels inside the block.
        out_chs: output channels (>= in_chs; the shortcut is zero-padded).
        stride: 1 or 2; with 2 the shortcut is a 2x2 max-pool.
    """

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.reduce = nn.Conv2d(in_chs, mid_chs, stride, stride=stride)
        self.reduce_act = nn.PReLU(mid_chs)
        self.dw = Conv2dSame(mid_chs, mid_chs, 3, groups=mid_chs)
        self.pw = nn.Conv2d(mid_chs, out_chs, 1)
        self.act = nn.PReLU(out_chs)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = nn.functional.max_pool2d(x, 2) if self.stride == 2 else x
        y = self.pw(self.dw(self.reduce_act(self.reduce(x))))
        return self.act(add_shortcut(y, shortcut))


def _head(out_chs: int) -> nn.Sequential:
    """8x8x128 -> 1x1 x out_chs: two blocks per resolution (8, 4, 2), then a 2x2 conv."""
    blocks = [BottleneckBlock(128, 64, 128, stride) for stride in (1, 1, 2, 1, 1, 2, 1, 1)]
    return nn.Sequential(*blocks, nn.Conv2d(128, out_chs, 2), nn.Flatten(1))


class IrisNet(nn.Module):
    """The iris-landmark network.

    ``forward`` takes Tensor[N, 3, 64, 64] float RGB in [0, 1] and returns
    ``(contour Tensor[N, 71, 3], iris Tensor[N, 5, 3])`` in crop pixels; with ``contour=False``
    the contour head is not run (about a tenth of the network's time) and contour is None.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = Conv2dSame(3, 64, 3, stride=2)
        self.stem_act = nn.PReLU(64)
        specs = [(64, 32, 64, 1)] * 4 + [(64, 64, 128, 2)] + [(128, 64, 128, 1)] * 4 + [(128, 64, 128, 2)]
        self.backbone = nn.Sequential(*[BottleneckBlock(*spec) for spec in specs])  # 32 -> 8 pixels
        self.contour_head = _head(NUM_CONTOUR * 3)
        self.iris_head = _head(NUM_IRIS * 3)

    def forward_features(self, x: Tensor) -> Tensor:
        """Tensor[N, 3, 64, 64] -> Tensor[N, 128, 8, 8]."""
        return self.backbone(self.stem_act(self.stem(x)))

    def forward(self, x: Tensor, contour: bool = True) -> tuple[Tensor | None, Tensor]:
        features = self.forward_features(x)
        points = self.contour_head(features).reshape(-1, NUM_CONTOUR, 3) if contour else None
        return points, self.iris_head(features).reshape(-1, NUM_IRIS, 3)


def eye_rois(mesh468: Tensor) -> tuple[Tensor, Tensor]:
    """Eye ROIs of every face, first eye (33/133) of all faces, then the second (362/263).

    Args:
        mesh468: Tensor[N, 468, 3] frame pixels.

    Returns:
        roi: Tensor[2N, 4] (cx, cy, side, angle).
        mirror: Tensor[2N] bool, True for the second eye.
    """
    num = mesh468.shape[0]
    starts = torch.cat([mesh468[:, a, :2] for a, _ in EYE_CORNERS])
    ends = torch.cat([mesh468[:, b, :2] for _, b in EYE_CORNERS])
    mirror = torch.arange(2 * num, device=mesh468.device) >= num
    return segment_roi(starts, ends, ROI_SCALE), mirror


@torch.inference_mode()
def predict_iris(net: IrisNet, frames: Tensor, frame_idx: Tensor, mesh468: Tensor) -> Tensor:
    """Iris points of both eyes of every face, one network call.

    Args:
        net: the iris network (on the device of ``frames``).
        frames: Tensor[B, 3, H, W] uint8 RGB.
        frame_idx: Tensor[N] int64, frame of each face.
        mesh468: Tensor[N, 468, 3] float frame pixels (from :class:`FaceMesh`).

    Returns:
        Tensor[N, 10, 3]: rows 0-4 the 33/133 eye, 5-9 the 362/263 eye, each (centre, right,
        up, left, down); x, y frame pixels, z in frame-pixel units anchored on the mesh.
    """
    num = mesh468.shape[0]
    mesh468 = mesh468.float()
    roi, mirror = eye_rois(mesh468)
    affine = roi_affine(roi, INPUT_SIZE, mirror)
    crops = warp_crops(frames, frame_idx.repeat(2), affine, INPUT_SIZE)
    _, iris = net(crops, contour=False)  # [2N, 5, 3] crop pixels (the eye contour is not used)
    order = torch.tensor(_MIRRORED_ORDER, device=iris.device)
    iris = torch.where(mirror[:, None, None], iris[:, order], iris)
    xy = crop_to_frame(iris[..., :2], affine)
    depth = (iris[..., 2] - iris[:, :1, 2]) * (roi[:, 2:3] / INPUT_SIZE)
    rings = torch.stack([mesh468[:, list(ring), 2].mean(dim=1) for ring in EYE_RINGS])  # [2, N]
    z = depth + rings.reshape(2 * num, 1)
    points = torch.cat([xy, z[..., None]], dim=-1)  # [2N, 5, 3]
    return points.reshape(2, num, NUM_IRIS, 3).transpose(0, 1).reshape(num, 2 * NUM_IRIS, 3)


def refine_with_iris(
    frames: Tensor, frame_idx: Tensor, mesh468: Tensor, net: IrisNet | None = None
) -> Tensor:
    """Append the 10 iris points to the 468-point mesh (MediaPipe's 478 topology).

    Args:
        frames: Tensor[B, 3, H, W] uint8 RGB.
        frame_idx: Tensor[N] int64, frame of each face.
        mesh468: Tensor[N, 468, 3] float frame pixels.
        net: iris network; default: the packaged weights (cached, moved to ``frames.device``).

    Returns:
        Tensor[N, 478, 3] float32: the mesh unchanged, then iris 468-472 and 473-477.
    """
    if net is None:
        net = _default_net(str(frames.device))
    iris = predict_iris(net, frames, frame_idx.to(frames.device), mesh468.to(frames.device))
    return torch.cat([mesh468.to(iris), iris], dim=1)


def load_iris(path: str | None = None, device: torch.device | str = "cpu") -> IrisNet:
    """Build :class:`IrisNet` with the packaged (or given) ``iris.safetensors`` weights.

    Raises:
        WeightsError: when the file is missing or does not match :class:`IrisNet`.
    """
    net = load_safetensors_into(IrisNet(), path or packaged_lite_file("iris.safetensors"))
    return net.eval().to(device)


@functools.lru_cache(maxsize=4)
def _default_net(device: str) -> IrisNet:
    return load_iris(device=device)
