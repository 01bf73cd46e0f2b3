"""Write a 720p clip whose face leaves: 60 frames of facecli bench's clip, then 120 frames of its
background alone, with sensor-like noise (sigma 3 levels) on every empty frame.

    PYTHONPATH=. python benchmarks/empty_scene_clip.py OUT.mp4 [--face 60] [--empty 120]

For ``facecli bench OUT.mp4 --models lite``: how much an empty stretch costs (docs/performance.md,
"Empty scenes").
"""

from __future__ import annotations

import argparse

import av
import numpy as np

from facecli.bench.clip import _background, clip_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--face", type=int, default=60, help="frames with the face")
    parser.add_argument("--empty", type=int, default=120, help="empty frames after them")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    background = _background(1280, 720).permute(1, 2, 0).numpy()
    with av.open(args.out, "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.options = {"crf": "20"}
        empty = (np.clip(background + rng.normal(0, 3, background.shape), 0, 255).astype(np.uint8)
                 for _ in range(args.empty))
        for frames in (clip_frames(args.face), empty):
            for array in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


if __name__ == "__main__":
    main()
