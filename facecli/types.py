"""Stage types of the facecli pipeline.

frames -> detections -> face chips (+ the affine back to the frame) -> face results -> Arrow record batches.

Every stage type is a small frozen dataclass. Tensor fields state shape, dtype and units.
Coordinates are always pixels of the *original* frame unless a field says otherwise.
These types carry torch tensors only; pandas/pyarrow live in ``facecli.schema`` and ``facecli.io``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class FrameBatch:
    """A batch of frames, all the same size (video frames of one file, or still images).

    images: Tensor[B, 3, H, W] uint8, RGB, original resolution.
    index: frame numbers in the source (for still images: their position in the run), len B.
    time_s: presentation time in seconds (0.0 for a still image), len B.
    sources: the input path of each frame as the user gave it, len B.
    """

    images: Tensor
    index: tuple[int, ...]
    time_s: tuple[float, ...]
    sources: tuple[str, ...]

    @property
    def height(self) -> int:
        return int(self.images.shape[-2])

    @property
    def width(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class Detections:
    """Faces found in a batch of frames, in original-frame pixels.

    boxes: Tensor[N, 4] float32, (x1, y1, x2, y2) pixels, not clipped to the frame.
    scores: Tensor[N] float32, detector confidence in [0, 1].
    landmarks: Tensor[N, K, 2] float32, (x, y) pixels of the detector's keypoints
        (RetinaFace: K=5 right eye, left eye, nose, right mouth corner, left mouth corner as the
        reference orders them; BlazeFace: K=6).
    frame: Tensor[N] int64, position of each face's frame in the batch (0..B-1), ascending.
    """

    boxes: Tensor
    scores: Tensor
    landmarks: Tensor
    frame: Tensor

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def take(self, rows: Tensor) -> "Detections":
        """The detections at ``rows`` (Tensor[M] int64, ascending so frames stay ascending)."""
        return Detections(boxes=self.boxes[rows], scores=self.scores[rows], landmarks=self.landmarks[rows],
                          frame=self.frame[rows])

    @staticmethod
    def empty(num_landmarks: int = 5, device: torch.device | str = "cpu") -> "Detections":
        return Detections(
            boxes=torch.zeros(0, 4, device=device),
            scores=torch.zeros(0, device=device),
            landmarks=torch.zeros(0, num_landmarks, 2, device=device),
            frame=torch.zeros(0, dtype=torch.long, device=device),
        )


@dataclass(frozen=True)
class FaceChips:
    """Square face crops and the affine that maps chip coordinates back to the frame.

    pixels: Tensor[N, 3, S, S] float32 RGB in [0, 1] (S = 256 for feat-v2).
    origin: Tensor[N, 2] float32, frame pixel (ox, oy) of the chip's top-left corner.
    side: Tensor[N] float32, side length in frame pixels covered by the chip.
    A chip-normalised point (u, v) in [0, 1] maps to frame pixels as (ox + u * side, oy + v * side).
    """

    pixels: Tensor
    origin: Tensor
    side: Tensor

    def to_frame(self, uv: Tensor) -> Tensor:
        """Map chip-normalised points Tensor[N, P, 2] to frame pixels Tensor[N, P, 2]."""
        return self.origin[:, None, :] + uv * self.side[:, None, None]

    @property
    def boxes(self) -> Tensor:
        """Tensor[N, 4] (x1, y1, x2, y2) frame pixels of the square each chip covers."""
        return torch.cat([self.origin, self.origin + self.side[:, None]], dim=1)


@dataclass(frozen=True)
class FaceResults:
    """Per-face measurements for one frame batch, all in the output conventions.

    Fields a model set cannot produce are None; their columns are left out of its files.

    frame: Tensor[N] int64, position in the batch of each face's frame.
    boxes: Tensor[N, 4] float32, (x1, y1, x2, y2) frame pixels of the face rectangle.
    scores: Tensor[N] float32, detector confidence.
    landmarks5: Tensor[N, K, 2] float32 frame pixels of the detector's keypoints, or None.
    mesh: Tensor[N, 478, 3] float32; x, y frame pixels, z relative depth (model units).
    pose: Tensor[N, 6] float32: Pitch, Roll, Yaw in radians (Pitch = +pose[0], Roll = -pose[2],
        Yaw = +pose[1] of the feat-v2 head), then X, Y, Z translation (model units).
    aus: Tensor[N, A] float32 action-unit probabilities in [0, 1], or None.
    emotions: Tensor[N, E] float32 probabilities summing to 1, or None.
    valence_arousal: Tensor[N, 2] float32 in [-1, 1], or None.
    gaze: Tensor[N, 2] float32 (pitch, yaw) radians, or None.
    identity: Tensor[N, D] float32 embedding, or None.
    blendshapes: Tensor[N, 52] float32 in [0, 1], or None.
    track: Tensor[N] int64 track id within the run's unit (>= 0), or None when not tracked.
    """

    frame: Tensor
    boxes: Tensor
    scores: Tensor
    landmarks5: Tensor | None = None
    mesh: Tensor | None = None
    pose: Tensor | None = None
    aus: Tensor | None = None
    emotions: Tensor | None = None
    valence_arousal: Tensor | None = None
    gaze: Tensor | None = None
    identity: Tensor | None = None
    blendshapes: Tensor | None = None
    track: Tensor | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@dataclass(frozen=True)
class ModelSetInfo:
    """What a model set produces and its own defaults, so the schema and the engine need no set names."""

    name: str  # "feat-v2" or "lite"
    au_names: tuple[str, ...] = ()  # empty: the set has no AU outputs
    emotion_names: tuple[str, ...] = ()  # empty: no emotion outputs
    valence_arousal: bool = False
    gaze: bool = False
    pose: bool = True
    blendshapes: bool = False
    identity_dim: int = 0  # 0: no identity embedding
    identity_threshold: float = 0.8  # leader clustering (py-feat's rule): cosine similarity to join an identity
    linkage_threshold: float = 0.5  # track linkage (facecli's default for videos): least mean cosine to merge
    appearance_gate: float | None = None  # tracker: least cosine between a track's and a face's embedding
    identity_model: str = "none"  # the identity network's name ("arcface", "facenet", "dlib", "none")
    detection_threshold: float = 0.5  # the detector score a face must reach, as this set was loaded
    detector: str = ""  # how the detector was set up, when the set offers a choice (part of the result settings)
    n_keypoints: int = 5  # detector keypoints per face
    precision: str = "fp32"  # the networks' arithmetic as loaded: "fp32" or "bf16" (autocast)
    weights: tuple[tuple[str, str], ...] = ()  # (role, file path) of every weight file used
