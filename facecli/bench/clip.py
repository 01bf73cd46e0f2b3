"""The clip ``facecli bench`` makes when it is given none: one real face moving over a plain scene.

The face is the head-and-shoulders region of NASA's public-domain portrait of Eileen Collins
(scikit-image's ``astronaut``), shipped as ``astronaut_head.jpg`` (340x340 pixels, 31 kB) so
the installed package can make the clip without scikit-image. It drifts across the frame on a
slow Lissajous path, turns a little (up to 8 degrees) and grows and shrinks by 10 % (the face
is about 0.3 of the frame's height, as in an interview or a webcam), so
detection, following and the mesh all have work to do; the background is a smooth colour
gradient with mild texture. H.264 (yuv420p, CRF 20), like most videos people have.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HEAD_IMAGE = Path(__file__).resolve().with_name("astronaut_head.jpg")


def _head() -> torch.Tensor:
    from PIL import Image

    with Image.open(HEAD_IMAGE) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).float()[None]


def scene_background(width: int, height: int) -> torch.Tensor:
    """The clip's background Tensor[3, H, W] float 0-255: a colour gradient with mild, fixed texture."""
    ys = torch.linspace(0, 1, height)[:, None].expand(height, width)
    xs = torch.linspace(0, 1, width)[None, :].expand(height, width)
    base = torch.stack([70 + 90 * xs, 90 + 60 * ys, 120 + 50 * (1 - xs) * ys])  # [3, H, W]
    gen = torch.Generator().manual_seed(0)
    texture = F.interpolate(torch.rand(1, 3, height // 16, width // 16, generator=gen), size=(height, width),
                            mode="bilinear", align_corners=False)[0]
    return base + 30 * (texture - 0.5)


def clip_frames(n: int, width: int = 1280, height: int = 720) -> Iterator[np.ndarray]:
    """``n`` frames ndarray[H, W, 3] uint8 RGB of the moving face, made one at a time."""
    head = _head()  # [1, 3, 340, 340]
    background = scene_background(width, height)
    side = 0.85 * height  # displayed head-image side in pixels: the face is about 0.3 of the height
    for i in range(n):
        t = i / 30.0  # seconds at 30 frames/s
        cx = width / 2 + 0.2 * width * math.sin(2 * math.pi * t / 7.0)
        cy = height / 2 + 0.08 * height * math.sin(2 * math.pi * t / 5.0)
        angle = math.radians(8.0) * math.sin(2 * math.pi * t / 3.0)
        scale = side * (1.0 + 0.1 * math.sin(2 * math.pi * t / 4.0))
        # frame pixel -> head image coordinates in [-1, 1]
        cos, sin = math.cos(angle), math.sin(angle)
        sx, sy = width / scale, height / scale
        ox, oy = (width / 2 - cx) * 2 / scale, (height / 2 - cy) * 2 / scale
        theta = torch.tensor([[cos * sx, sin * sy, cos * ox + sin * oy],
                              [-sin * sx, cos * sy, -sin * ox + cos * oy]], dtype=torch.float32)[None]
        grid = F.affine_grid(theta, [1, 3, height, width], align_corners=False)
        face = F.grid_sample(head, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
        mask = F.grid_sample(torch.ones(1, 1, *head.shape[-2:]), grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)[0]
        frame = face + (1 - mask) * background
        yield frame.permute(1, 2, 0).clamp(0, 255).round().byte().numpy()


def write_h264(path: str | Path, frames: Iterable[np.ndarray], fps: int = 30) -> Path:
    """Write frames ndarray[H, W, 3] uint8 RGB (all one size) as an H.264 .mp4 (yuv420p, CRF 20),
    one frame at a time; return ``path``."""
    import av

    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = None
        for arr in frames:
            if stream is None:
                stream = container.add_stream("libx264", rate=fps)
                stream.width, stream.height = arr.shape[1], arr.shape[0]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "20"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    return path


def make_clip(path: str | Path, frames: int, width: int = 1280, height: int = 720, fps: int = 30) -> Path:
    """Write the bench clip (H.264 .mp4) to ``path``; return it."""
    return write_h264(path, clip_frames(frames, width, height), fps)
