"""Make examples/astronaut.mp4, the demo clip, from scikit-image's public-domain astronaut photo.

The clip (3 s, 15 fps, 320x320, H.264) slowly zooms and tilts the head region of the photo
(NASA portrait of Eileen Collins, public domain) so that detection, mesh and pose change
from frame to frame. Run:

    python examples/make_clip.py [OUT.mp4]

It needs scikit-image (``pip install -e .[test]``) and PyAV.
"""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F


def frames(n: int = 45, size: int = 320) -> list[np.ndarray]:
    from skimage import data

    img = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float()[None]  # [1, 3, 512, 512]
    out = []
    for i in range(n):
        t = i / (n - 1)
        angle = np.deg2rad(12.0 * np.sin(2 * np.pi * t))  # tilt left and right
        zoom = 0.62 - 0.12 * t  # fraction of the photo shown
        cx, cy = -0.16, -0.42  # normalised centre of the view, above-left of the photo's centre
        cos, sin = np.cos(angle) * zoom, np.sin(angle) * zoom
        theta = torch.tensor([[cos, -sin, cx], [sin, cos, cy]], dtype=torch.float32)[None]
        grid = F.affine_grid(theta, [1, 3, size, size], align_corners=False)
        frame = F.grid_sample(img, grid, padding_mode="reflection", align_corners=False)
        out.append(frame[0].permute(1, 2, 0).clamp(0, 255).round().byte().numpy())
    return out


def write(path: Path, images: list[np.ndarray], fps: int = 15) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = images[0].shape[1], images[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "20"}
        for arr in images:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("astronaut.mp4")
    write(out, frames())
    print(f"wrote {out}")
