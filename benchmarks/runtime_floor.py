"""lite's networks in PyTorch against the same MediaPipe files under LiteRT (TFLite + XNNPACK).

    pip install ai-edge-litert   # Apache-2.0; not a facecli dependency
    PYTHONPATH=. python benchmarks/runtime_floor.py [--sources DIR] [--threads 2] [--rounds 5]

facecli's lite networks are MediaPipe's own (``face_detection_short_range.tflite``,
``face_landmark.tflite``, ``iris_landmark.tflite``) converted to PyTorch. This script runs each
with the same input in both runtimes, in one process, alternating rounds, and prints the
milliseconds per call (best and median round), the ratio, and the largest output difference,
which shows that both compute the same thing: what is left between them is the runtime.
Shapes are those of facecli's hot path: BlazeFace on its 128 x 128 letterbox, the mesh on one
192 x 192 face crop (a followed face, one frame after the other), the iris on the two 64 x 64
eye crops of one face (LiteRT's graph takes one eye per call, so two calls).

``--sources``: the folder with the original ``.tflite`` files (default ``$FACECLI_LITE_SOURCES``
or ``../shared/lite-sources`` beside the checkout; see scripts/convert_lite.py).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
TFLITE_FILES = ("face_detection_short_range.tflite", "face_landmark.tflite", "iris_landmark.tflite")


def time_calls(fn: Callable[[], object], calls: int) -> float:
    """Milliseconds per call of ``calls`` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e3


class LiteRTNetwork(torch.nn.Module):
    """One of lite's networks run by LiteRT from its original .tflite file, called as the PyTorch
    module it replaces (NCHW float input, the same outputs), one image per LiteRT call. For
    benchmarks only: facecli itself runs lite in PyTorch."""

    def __init__(self, path: Path, threads: int = 2) -> None:
        from ai_edge_litert.interpreter import Interpreter

        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)  # (callers ask its device)
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.outputs = {int(np.prod(d["shape"])): d["index"] for d in self.interpreter.get_output_details()}

    def run(self, x: torch.Tensor, sizes: tuple[int, ...]) -> list[torch.Tensor]:
        """Outputs of these sizes (values per image) for Tensor[N, 3, H, W], stacked over N."""
        images = x.permute(0, 2, 3, 1).contiguous().numpy()
        rows = []
        for image in images:
            self.interpreter.set_tensor(self.input, image[None])
            self.interpreter.invoke()
            rows.append([self.interpreter.get_tensor(self.outputs[size]).reshape(-1).copy() for size in sizes])
        return [torch.from_numpy(np.stack(column)) for column in zip(*rows)]


class LiteRTMesh(LiteRTNetwork):
    """``FaceMeshNet``: (points Tensor[N, 468, 3] crop pixels, presence logit Tensor[N])."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        points, logit = self.run(x, (468 * 3, 1))
        return points.reshape(-1, 468, 3), logit[:, 0]


class LiteRTIris(LiteRTNetwork):
    """``IrisNet`` with ``contour=False``: (None, iris Tensor[N, 5, 3] crop pixels)."""

    def forward(self, x: torch.Tensor, contour: bool = False) -> tuple[None, torch.Tensor]:
        (points,) = self.run(x, (5 * 3,))
        return None, points.reshape(-1, 5, 3)


@contextlib.contextmanager
def litert_mesh_and_iris(sources: Path, threads: int = 2) -> Iterator[None]:
    """While open, the lite sets facecli loads run their mesh and iris networks under LiteRT."""
    import facecli.models.lite as lite

    load = lite.load_lite

    def load_with_litert(*args, **kwargs):
        models = load(*args, **kwargs)
        models.mesh.net = LiteRTMesh(sources / "face_landmark.tflite", threads)
        models.iris = LiteRTIris(sources / "iris_landmark.tflite", threads)
        return models

    lite.load_lite = load_with_litert
    try:
        yield
    finally:
        lite.load_lite = load


def source_problem(sources: Path) -> str | None:
    """Why the LiteRT runs cannot start (LiteRT missing, files missing), or None."""
    if importlib.util.find_spec("ai_edge_litert") is None:
        return "ai-edge-litert is not installed (pip install ai-edge-litert)"
    missing = [n for n in TFLITE_FILES if not (sources / n).is_file()]
    return f"{sources}: missing {', '.join(missing)}" if missing else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("FACECLI_LITE_SOURCES", str(REPO.parent / "shared" / "lite-sources"))
    parser.add_argument("--sources", type=Path, default=Path(default))
    parser.add_argument("--threads", type=int, default=2, help="threads of both runtimes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50, help="calls per round")
    args = parser.parse_args()
    problem = source_problem(args.sources)
    if problem:
        sys.exit(f"runtime_floor: {problem}")

    from facecli.models.lite import load_lite

    torch.set_num_threads(args.threads)
    models = load_lite(device="cpu")
    blazeface = models.networks()["blazeface"].module.to(memory_format=torch.channels_last).eval()
    mesh = models.mesh.net.to(memory_format=torch.channels_last).eval()
    iris = models.iris.to(memory_format=torch.channels_last).eval()

    gen = np.random.default_rng(0)
    face = gen.random((1, 192, 192, 3), dtype=np.float32)  # [0, 1], as the mesh takes
    letterbox = gen.random((1, 128, 128, 3), dtype=np.float32) * 2 - 1  # [-1, 1], as BlazeFace takes
    eyes = gen.random((2, 64, 64, 3), dtype=np.float32)

    def nchw(x: np.ndarray) -> torch.Tensor:  # channels-last memory: the NHWC array as it is
        return torch.from_numpy(x).permute(0, 3, 1, 2)

    lite_blazeface = LiteRTNetwork(args.sources / TFLITE_FILES[0], args.threads)
    lite_mesh = LiteRTMesh(args.sources / TFLITE_FILES[1], args.threads)
    lite_iris = LiteRTIris(args.sources / TFLITE_FILES[2], args.threads)
    cases = {  # LiteRT's BlazeFace outputs: regressors and logits, anchors in the order of ours
        "blazeface 128x128": (lambda: blazeface(nchw(letterbox)),
                              lambda: lite_blazeface.run(nchw(letterbox), (896 * 16, 896))),
        "face mesh 192x192, 1 face": (lambda: mesh(nchw(face)), lambda: lite_mesh(nchw(face))),
        "iris 64x64, 2 eyes": (lambda: iris(nchw(eyes), contour=False), lambda: lite_iris(nchw(eyes))),
    }
    print(f"threads {args.threads}, {args.rounds} rounds of {args.calls} calls, torch {torch.__version__}")
    print(f"{'network':28s} {'torch ms':>17s} {'LiteRT ms':>17s} {'torch/LiteRT':>12s} {'max diff':>9s}")
    with torch.inference_mode():
        for name, (torch_run, lite_run) in cases.items():
            out, lite_out = torch_run(), lite_run()
            diff = max(float((t.reshape(o.shape) - o).abs().max()) for t, o in zip(out, lite_out) if t is not None)
            times: dict[str, list[float]] = {"torch": [], "litert": []}
            for _ in range(3):
                torch_run(), lite_run()
            for r in range(args.rounds):
                order = ("torch", "litert") if r % 2 == 0 else ("litert", "torch")
                for side in order:
                    times[side].append(time_calls(torch_run if side == "torch" else lite_run, args.calls))
            t, lt = times["torch"], times["litert"]
            print(f"{name:28s} {min(t):7.2f} (med {statistics.median(t):5.2f}) {min(lt):7.2f} (med "
                  f"{statistics.median(lt):5.2f}) {statistics.median(t) / statistics.median(lt):11.1f}x {diff:9.1e}")


if __name__ == "__main__":
    main()
