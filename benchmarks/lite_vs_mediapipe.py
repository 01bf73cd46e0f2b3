"""facecli's lite pipeline vs MediaPipe's own face mesh, frames per second on the same decoded clip.

    .venv/bin/python benchmarks/lite_vs_mediapipe.py [CLIP] [--threads 2] [--batch-size 8] [--passes 3]

Both sides get the same frames, decoded once up front (decoding is not timed), and both are
timed in this one run, so the ratio is comparable across machines:

* facecli lite: BlazeFace detection on every frame, face mesh, iris, head pose, FER emotions and
  the dlib embedding (``LiteSet.detect`` + ``LiteSet.analyze``), batches of ``--batch-size``
  frames, torch CPU threads ``--threads``.
* the same, restricted to the stages MediaPipe's face mesh runs (detection, mesh, iris);
* MediaPipe 0.10.21 ``mp.solutions.face_mesh`` (refine_landmarks=True, video mode), run by
  ``benchmarks/mediapipe_facemesh_timing.py`` in the interpreter named by
  ``$FACECLI_MEDIAPIPE_PYTHON`` or ``.mp/bin/python``; skipped when neither exists. It computes
  less (mesh + iris only; in video mode it tracks from the previous landmarks instead of
  detecting on every frame) and uses its own thread pool.

Each side makes one untimed warm-up pass, then ``--passes`` timed passes over the clip.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO / "examples" / "astronaut.mp4"
HELPER = Path(__file__).resolve().with_name("mediapipe_facemesh_timing.py")


def decode(clip: Path) -> torch.Tensor:
    """All frames of ``clip`` as Tensor[N, 3, H, W] uint8 RGB."""
    from facecli.io.video import iter_video_batches

    return torch.cat([batch.images for batch in iter_video_batches(clip, batch_size=16)])


def time_lite(frames: torch.Tensor, batch_size: int, passes: int, mesh_only: bool = False) -> tuple[float, float]:
    """(frames per second, faces per frame) of the lite set on CPU.

    Args:
        mesh_only: time only what MediaPipe's face mesh computes (detection, mesh, iris).
    """
    from facecli.models.lite import load_lite
    from facecli.models.lite.iris import refine_with_iris

    lite = load_lite("cpu")
    batches = list(frames.split(batch_size))

    def mesh_stages(b: torch.Tensor) -> int:
        d = lite.detect(b)
        mesh, _ = lite.mesh.run(b, d.frame, d.landmarks, d.boxes)
        return len(refine_with_iris(b, d.frame, mesh, lite.iris))

    @torch.inference_mode()
    def one_pass() -> int:
        if mesh_only:
            return sum(mesh_stages(b) for b in batches)
        return sum(len(lite.analyze(b, lite.detect(b))) for b in batches)

    one_pass()  # warm-up
    start = time.perf_counter()
    faces = sum(one_pass() for _ in range(passes))
    elapsed = time.perf_counter() - start
    n = passes * len(frames)
    return n / elapsed, faces / n


def mediapipe_python() -> str | None:
    candidate = os.environ.get("FACECLI_MEDIAPIPE_PYTHON") or str(REPO / ".mp" / "bin" / "python")
    return candidate if Path(candidate).is_file() else None


def time_mediapipe(python: str, frames: torch.Tensor, passes: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frames.npy"
        np.save(path, frames.permute(0, 2, 3, 1).contiguous().numpy())
        done = subprocess.run(
            [python, str(HELPER), str(path), "--passes", str(passes)], capture_output=True, text=True, check=False
        )
    if done.returncode != 0:
        raise RuntimeError(f"mediapipe helper failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for facecli")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--passes", type=int, default=3, help="timed passes over the clip")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    frames = decode(args.clip)
    n, _, h, w = frames.shape
    print(f"clip {args.clip}: {n} frames {w}x{h}; {args.passes} timed passes after one warm-up")
    lite_fps, lite_faces = time_lite(frames, args.batch_size, args.passes)
    print(
        f"facecli lite (detect every frame + mesh + iris + pose + FER + dlib), torch threads "
        f"{torch.get_num_threads()}, batch {args.batch_size}: {lite_fps:.1f} frames/s "
        f"({1000 / lite_fps:.1f} ms/frame, {lite_faces:.2f} faces/frame)"
    )
    mesh_fps, _ = time_lite(frames, args.batch_size, args.passes, mesh_only=True)
    print(f"facecli lite, MediaPipe's stages only (detect + mesh + iris): {mesh_fps:.1f} frames/s ({1000 / mesh_fps:.1f} ms/frame)")
    python = mediapipe_python()
    if python is None:
        print("mediapipe: skipped (set FACECLI_MEDIAPIPE_PYTHON to a python with mediapipe installed)")
        return 0
    mp = time_mediapipe(python, frames, args.passes)
    print(
        f"mediapipe {mp['mediapipe']} face_mesh (refine_landmarks, video mode): {mp['fps']:.1f} frames/s "
        f"({1000 / mp['fps']:.1f} ms/frame, {mp['faces_per_frame']:.2f} faces/frame)"
    )
    print(f"ratio facecli lite / mediapipe: {lite_fps / mp['fps']:.2f} (full), {mesh_fps / mp['fps']:.2f} (same stages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
