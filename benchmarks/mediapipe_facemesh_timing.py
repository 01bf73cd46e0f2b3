"""Frames per second of MediaPipe's own face mesh on pre-decoded frames (run in the mediapipe venv).

    /work/main/.mp/bin/python benchmarks/mediapipe_facemesh_timing.py FRAMES.npy [--passes N] [--static]

FRAMES.npy: uint8 [N, H, W, 3] RGB. Uses ``mp.solutions.face_mesh.FaceMesh`` with
``refine_landmarks=True`` (478 points, iris included) and ``static_image_mode=False`` (video mode:
after the first frame the face is tracked from the previous landmarks and the detector runs only
when tracking is lost; ``--static``: static_image_mode, the detector on every frame). One untimed pass warms the graph up; the timed passes continue the same
stream. Prints one JSON line: {"fps", "frames", "faces_per_frame", "mediapipe"}.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frames", help="uint8 [N, H, W, 3] RGB .npy file")
    parser.add_argument("--passes", type=int, default=3, help="timed passes over the frames")
    parser.add_argument("--static", action="store_true", help="static_image_mode: detect on every frame")
    args = parser.parse_args()

    import mediapipe as mp

    frames = np.load(args.frames)
    found = 0
    with mp.solutions.face_mesh.FaceMesh(
        static_image_mode=args.static, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.5
    ) as mesh:
        for frame in frames:  # warm-up pass
            mesh.process(frame)
        start = time.perf_counter()
        for _ in range(args.passes):
            for frame in frames:
                result = mesh.process(frame)
                found += len(result.multi_face_landmarks or ())
        elapsed = time.perf_counter() - start
    n = args.passes * len(frames)
    print(json.dumps({"fps": n / elapsed, "frames": n, "faces_per_frame": found / n, "mediapipe": mp.__version__}))


if __name__ == "__main__":
    main()
