"""Five-point face alignment to dlib's chip, as pure tensor functions.

dlib's face-recognition chip (``get_face_chip_details(shape, 150, 0.25)`` followed by
``extract_image_chip``) is built in three steps, reproduced here:

1. A least-squares similarity transform (rotation, isotropic scale, translation) maps the
   template points in chip pixels onto the five detected points in frame pixels.
2. dlib keeps only the transform's rotation, its scale and where it sends the chip centre, as a
   rectangle of side ``size * scale - 1`` frame pixels centred there; chip pixel 0 lands on the
   rectangle's first edge and pixel ``size - 1`` on its last. :func:`dlib_chip_affine` returns that
   mapping, which differs from the raw similarity by under one pixel.
3. Chip pixels are read with bilinear interpolation; points outside the frame read 0. When the
   face spans more than two frame pixels per chip pixel, dlib first shrinks the frame with its
   ``pyramid_down<2>`` (a 5x5 binomial filter [1 4 6 4 1]^2/256, every other pixel) until it spans
   at most two, so the bilinear read does not alias. :func:`warp_chips` does the same with its own
   binomial pyramid; its sample grid sits up to a quarter pixel of the coarse level away from
   dlib's, whose pyramid crops its borders slightly differently.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from facecli.ops.sample import gather_bilinear

# dlib's 5-point template, (x, y) in [0, 1] of the unpadded face square, in the order of dlib's
# shape_predictor_5_face_landmarks: left eye outer, left eye inner, right eye outer, right eye
# inner, bottom of the nose ("left" is the subject's left, on the image's right).
DLIB_TEMPLATE_5 = (
    (0.8595674595992, 0.2134981538014),
    (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848),
    (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475),
)

# Indices of the same five points in MediaPipe's 478-point mesh.
MESH_TO_DLIB_5 = (263, 362, 33, 133, 2)


def dlib_template(size: int = 150, padding: float = 0.25) -> Tensor:
    """dlib's five template points in chip pixels.

    Args:
        size: chip side in pixels.
        padding: margin added on every side, as a fraction of the unpadded face square.

    Returns:
        Tensor[5, 2] float32 (x, y) chip pixels: ``(padding + p) / (1 + 2 * padding) * size``.
    """
    unit = torch.tensor(DLIB_TEMPLATE_5, dtype=torch.float64)
    return ((padding + unit) / (1 + 2 * padding) * size).float()


def similarity_transform(src: Tensor, dst: Tensor) -> Tensor:
    """Least-squares similarity transform (no reflection) sending ``src`` onto ``dst``.

    Minimises sum |A [s; 1] - d|^2 over A = [[a, -b, tx], [b, a, ty]], the same optimum as
    Umeyama's method (used by dlib's ``find_similarity_transform``).

    Args:
        src: Tensor[P, 2] or Tensor[N, P, 2] source points (x, y).
        dst: Tensor[N, P, 2] target points (x, y).

    Returns:
        Tensor[N, 2, 3] float32 affine matrices; ``dst ~= src @ A[:, :, :2].T + A[:, :, 2]``.
    """
    dst = dst.double()
    src = src.double().to(dst.device).expand_as(dst)
    src_mean, dst_mean = src.mean(dim=1, keepdim=True), dst.mean(dim=1, keepdim=True)
    s, d = src - src_mean, dst - dst_mean  # [N, P, 2]
    norm = (s * s).sum(dim=(1, 2)).clamp_min(1e-12)  # [N]
    a = (s * d).sum(dim=(1, 2)) / norm
    b = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(dim=1) / norm
    linear = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], dim=1)  # [N, 2, 2]
    shift = dst_mean[:, 0] - torch.einsum("nij,nj->ni", linear, src_mean[:, 0])
    return torch.cat([linear, shift[..., None]], dim=2).float()


def dlib_chip_affine(points5: Tensor, size: int = 150, padding: float = 0.25) -> Tensor:
    """Map from chip pixels to frame pixels for dlib's aligned face chip.

    Args:
        points5: Tensor[N, 5, 2] (x, y) frame pixels in template order (see ``DLIB_TEMPLATE_5``).
        size: chip side in pixels (150 for the face-recognition ResNet).
        padding: dlib's padding (0.25 for the face-recognition ResNet).

    Returns:
        Tensor[N, 2, 3] float32: frame (x, y) = M @ (u, v, 1) for chip pixel (u, v).
    """
    tform = similarity_transform(dlib_template(size, padding), points5).double()
    linear = tform[:, :, :2]  # scale * rotation
    scale = linear[:, :, 0].norm(dim=1)  # [N]
    rotation = linear / scale[:, None, None]
    centre = tform[:, :, 2] + linear.sum(dim=2) * (size / 2.0)  # tform applied to (size/2, size/2)
    step = (size * scale - 1) / (size - 1)  # frame pixels per chip pixel
    new_linear = rotation * step[:, None, None]
    offset = centre - new_linear.sum(dim=2) * ((size - 1) / 2.0)
    return torch.cat([new_linear, offset[..., None]], dim=2).float()


def pyramid_levels(affine: Tensor, size: int) -> Tensor:
    """Number of 2x pyramid reductions dlib applies before reading each chip.

    Args:
        affine: Tensor[N, 2, 3] chip-to-frame maps from :func:`dlib_chip_affine`.
        size: chip side in pixels.

    Returns:
        Tensor[N] int64: the smallest d >= 0 with (chip span in frame pixels) / 2^(d+1) <= size.
    """
    span = affine[:, :, 0].norm(dim=1) * (size - 1)  # rectangle side in frame pixels
    levels = torch.ceil(torch.log2((span / size).clamp_min(1e-6)) - 1e-9) - 1
    return levels.clamp_min(0).long()


def _binomial_down(frames: Tensor) -> Tensor:
    """One pyramid level: 5x5 binomial blur, every other pixel, no padding.

    Pixel j of the result is centred on pixel 2j + 2 of the input.
    """
    taps = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=frames.device, dtype=frames.dtype)
    kernel = (taps[:, None] * taps[None, :] / 256.0).expand(frames.shape[1], 1, 5, 5)
    return F.conv2d(frames, kernel, stride=2, groups=frames.shape[1])


def _max_level(height: int, width: int) -> int:
    """Most pyramid reductions a frame allows (each needs at least 5 pixels per side)."""
    level, side = 0, min(height, width)
    while side >= 5 + 2 * 4:  # keep at least 5 pixels after the reduction
        side, level = (side - 5) // 2 + 1, level + 1
    return level


def chip_grid(affine: Tensor, size: int) -> Tensor:
    """Frame coordinates read by every chip pixel.

    Args:
        affine: Tensor[N, 2, 3] chip-to-frame maps.
        size: chip side S.

    Returns:
        Tensor[N, S, S, 2] (x, y) frame pixels (pixel-index convention: pixel k is centred on k).
    """
    steps = torch.arange(size, device=affine.device, dtype=torch.float32)
    v, u = torch.meshgrid(steps, steps, indexing="ij")
    uv1 = torch.stack([u, v, torch.ones_like(u)], dim=-1)  # [S, S, 3]
    return torch.einsum("nij,hwj->nhwi", affine.float(), uv1)


def warp_chips(
    frames: Tensor, frame_idx: Tensor, affine: Tensor, size: int, antialias: bool = True
) -> Tensor:
    """Bilinear chips of the frames through chip-to-frame affine maps, as dlib extracts them.

    Chips read straight from the (uint8) frames; a chip that needs the pyramid shrinks only the
    part of its frame it reads (aligned so that the result equals the whole frame's pyramid), so
    memory follows the faces, not the frames.

    Args:
        frames: Tensor[B, C, H, W] uint8 or float (values are kept, not rescaled).
        frame_idx: Tensor[N] int64 frame of each chip.
        affine: Tensor[N, 2, 3] chip pixel (u, v, 1) -> frame pixel (x, y).
        size: chip side S.
        antialias: shrink large faces with a binomial pyramid first, as dlib does.

    Returns:
        Tensor[N, C, S, S] float32; points outside the frame read 0.
    """
    n = affine.shape[0]
    out = torch.zeros(n, frames.shape[1], size, size, device=frames.device)
    if n == 0:
        return out
    grid = chip_grid(affine, size)
    levels = pyramid_levels(affine, size) if antialias else torch.zeros_like(frame_idx)
    levels = levels.clamp(max=_max_level(*frames.shape[-2:]))
    flat = (levels == 0).nonzero().squeeze(1)
    if flat.numel():
        out[flat] = gather_bilinear(frames, frame_idx[flat], grid[flat][..., 0], grid[flat][..., 1], padding="zeros")
    for i in (levels > 0).nonzero().squeeze(1).tolist():  # faces over ~300 pixels: few
        out[i] = _pyramid_chip(frames[int(frame_idx[i])], grid[i], int(levels[i]))
    return out


def _pyramid_chip(frame: Tensor, grid: Tensor, level: int) -> Tensor:
    """One chip read from pyramid level ``level`` of the region of ``frame`` [C, H, W] it needs.

    Level-``L`` pixel ``j`` is centred on frame pixel ``2^L j + c`` (c = 2^(L+1) - 2) and depends
    on frame pixels ``2^L j .. 2^L j + 2c``; a region starting at a multiple of ``2^L`` shrinks to
    exactly the level-``L`` pixels of the whole frame from ``start / 2^L`` on.

    Args:
        frame: Tensor[C, H, W].
        grid: Tensor[S, S, 2] (x, y) frame pixels the chip reads.
        level: pyramid reductions, >= 1 (and at most what the frame allows).

    Returns:
        Tensor[C, S, S] float32.
    """
    step = 2**level
    centre = 2 * (step - 1)
    pos = (grid - centre) / step  # level-L pixels
    min_len = 2 ** (level + 2) - 3  # frame pixels that still give one pixel after `level` reductions
    starts, stops = [], []
    for axis, length in ((0, frame.shape[2]), (1, frame.shape[1])):
        first = max(int(torch.floor(pos[..., axis].min())) - 1, 0)  # level-L pixels the taps may use
        last = int(torch.floor(pos[..., axis].max())) + 2
        start = min(step * first, step * (length // step))
        stop = min(length, step * last + 2 * centre + 1)
        while stop - start < min_len and start > 0:  # a sliver at the frame's edge: widen inward
            start -= step
        starts.append(start)
        stops.append(stop)
    region = frame[:, starts[1] : stops[1], starts[0] : stops[0]].float()[None]
    for _ in range(level):
        region = _binomial_down(region)
    offset = torch.tensor([starts[0] // step, starts[1] // step], dtype=pos.dtype, device=pos.device)
    index = torch.zeros(1, dtype=torch.long, device=frame.device)
    local = (pos - offset)[None]
    return gather_bilinear(region, index, local[..., 0], local[..., 1], padding="zeros")[0]
