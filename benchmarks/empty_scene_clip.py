"""Write a 720p clip whose face leaves: 60 frames of facecli bench's clip, then 120 frames of its
background alone, with sensor-like noise (sigma 3 levels) on every empty frame.

    PYTHONPATH=. python benchmarks/empty_scene_clip.py OUT.mp4 [--face 60] [--empty 120]

For ``facecli bench OUT.mp4 --models lite``: how much an empty stretch costs (docs/performance.md,
"Empty scenes").
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from facecli.bench.clip import clip_frames, scene_background, write_h264


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--face", type=int, default=60, help="frames with the face")
    parser.add_argument("--empty", type=int, default=120, help="empty frames after them")
    args = parser.parse_args()
    if args.face < 0 or args.empty < 0 or args.face + args.empty < 1:
        parser.error("--face and --empty must not be negative, and the clip needs at least one frame")
    rng = np.random.default_rng(0)
    background = scene_background(1280, 720).permute(1, 2, 0).numpy()
    empty = (np.clip(background + rng.normal(0, 3, background.shape), 0, 255).astype(np.uint8)
             for _ in range(args.empty))
    write_h264(args.out, itertools.chain(clip_frames(args.face), empty))


if __name__ == "__main__":
    main()
