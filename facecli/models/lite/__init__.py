"""The lite model set: offline, permissively licensed models packaged with facecli.

BlazeFace (detector, 6 keypoints; by default tiled over the frame at every scale it needs, see
:mod:`facecli.models.lite.tiling`) -> MediaPipe face mesh (468 points) -> iris refinement (478)
-> head pose by a similarity fit of the mesh to MediaPipe's canonical face; FER mini-Xception
emotions on the detector box; dlib ResNet 128-d identity on a chip aligned by 5 mesh points.
Every stage runs once per frame batch on all faces together, on crops read straight from the
full-resolution uint8 frames (so a small face is measured on every pixel it has). No AUs,
valence/arousal, gaze or blendshapes: their columns are left out.

Conventions of :class:`LiteSet` outputs (all frame pixels unless stated):

* ``boxes`` / ``scores`` / ``landmarks5``: BlazeFace's box, score and its 6 keypoints (right eye,
  left eye, nose tip, mouth, right ear tragion, left ear tragion).
* ``mesh``: [N, 478, 3]; z in frame-pixel units, smaller = nearer the camera.
* ``pose``: Pitch, Roll, Yaw radians (see :mod:`facecli.ops.pose`; zero for a frontal upright
  face, Pitch > 0 head up (chin raised), Yaw > 0 head turned to the subject's right (the face
  turns toward the viewer's left), Roll > 0 head tilted toward the subject's right shoulder
  (counter-clockwise as displayed)), X, Y = frame pixels where the canonical face's origin lands
  (a point on the head's midline 7.5 cm behind the nose tip and 2.7 cm below the eye corners,
  so for a frontal face it projects onto the nose between the eyes and the tip), Z = scale of the
  fit in frame pixels per centimetre of the canonical face (grows as the face comes closer; no
  camera model, so not a distance).
* ``emotions``: Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger probabilities.
* ``identity``: dlib's 128-d descriptor (Euclidean distance < 0.6: probably the same person).

A detection whose mesh presence score is below :data:`MIN_PRESENCE` (MediaPipe drops those
faces) is kept, since the detector found it, with its box, score, keypoints and emotions, but its
mesh, pose and identity are NaN: the mesh model says the crop does not hold a face, so
measurements built on the mesh would be meaningless.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor

from facecli.models.lite.blazeface import DEFAULT_THRESHOLD, NUM_KEYPOINTS, BlazeFaceDetector, load_blazeface
from facecli.models.lite.dlib_resnet import DlibEmbedder, load_dlib_resnet
from facecli.models.lite.facemesh import NUM_POINTS as MESH_CORE
from facecli.models.lite.facemesh import FaceMesh, load_facemesh
from facecli.models.lite.fer import LABELS as EMOTION_NAMES
from facecli.models.lite.fer import FerEmotion, load_fer
from facecli.models.lite.iris import IrisNet, load_iris, refine_with_iris
from facecli.models.lite.tiling import DEFAULT_MIN_FACE, TiledDetector
from facecli.models.weights import WeightsError, read_safetensors
from facecli.ops.align import MESH_TO_DLIB_5
from facecli.models.runtime import Network
from facecli.ops.pose import head_pose
from facecli.timing import stage
from facecli.types import Detections, FaceResults, ModelSetInfo

MIN_PRESENCE = 0.5  # mesh face-presence probability below which mesh-derived outputs are NaN
MESH_POINTS = 478
IDENTITY_DIM = 128
# dlib's own rule is "same person when the Euclidean distance is below 0.6"; its descriptors have
# norms close to 1.4, so that distance is a cosine similarity of about 1 - 0.6**2 / (2 * 1.4**2) = 0.91,
# while different people's descriptors are rarely below cosine 0.8 (0.8 would merge them).
IDENTITY_THRESHOLD = 0.91
# Track linkage: dlib's rule as above (one person's faces on the composed test video are at cosine
# 0.92-0.99, the astronaut vs the cameraman at most 0.85). The tracker refuses to continue a track
# with a face below APPEARANCE_GATE (one person above about 0.92, the two people at most 0.85).
LINKAGE_THRESHOLD = 0.91
APPEARANCE_GATE = 0.87

__all__ = ["MIN_PRESENCE", "LiteSet", "load_canonical_face", "load_lite"]


def load_canonical_face(path: str | Path | None = None, device: torch.device | str = "cpu") -> Tensor:
    """The canonical frontal face mesh the head pose is fitted to.

    Args:
        path: file; default the packaged ``canonical_face.safetensors``.
        device: where to put it.

    Returns:
        Tensor[468, 3] float32 centimetres; x right, y down, z away from the camera; symmetric
        about x = 0.

    Raises:
        WeightsError: the file is missing or does not hold ``vertices`` [468, 3].
    """
    from facecli.models.lite.files import lite_file

    path = Path(path) if path is not None else lite_file("canonical_face").path
    tensors, _ = read_safetensors(path)
    vertices = tensors.get("vertices")
    if vertices is None or tuple(vertices.shape) != (468, 3):
        got = None if vertices is None else tuple(vertices.shape)
        raise WeightsError(f"{path}: expected tensor 'vertices' of shape (468, 3), got {got}")
    return vertices.float().to(device)


class LiteSet:
    """The lite models behind facecli's ``ModelSet`` interface.

    Args:
        detector: BlazeFace over the whole frame, or tiled over the frame at several scales.
        mesh: face-mesh model.
        iris: iris network.
        emotion: FER classifier.
        identity: dlib embedder.
        canonical: Tensor[468, 3] canonical face (see :func:`load_canonical_face`).
        device: where every model runs.
        threshold: detector score a face must reach.
        weights: (role, path) of every weight file, for the output metadata.
    """

    def __init__(
        self,
        detector: BlazeFaceDetector | TiledDetector,
        mesh: FaceMesh,
        iris: IrisNet,
        emotion: FerEmotion,
        identity: DlibEmbedder,
        canonical: Tensor,
        device: torch.device,
        threshold: float | None = None,
        weights: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.device = device
        self.detector = detector
        self.mesh = mesh
        self.iris = iris
        self.emotion = emotion
        self.identity = identity
        self.canonical = canonical.to(device)
        self.threshold = threshold
        if isinstance(detector, TiledDetector):
            default_threshold = detector.threshold
            detector_setting = f"blazeface-short tiled, min face {detector.min_face:g} px"
        else:
            default_threshold = DEFAULT_THRESHOLD[detector.model.variant]
            detector_setting = f"blazeface-{detector.model.variant} whole frame"
        self.info = ModelSetInfo(
            name="lite",
            emotion_names=tuple(EMOTION_NAMES),
            pose=True,
            identity_dim=IDENTITY_DIM,
            identity_threshold=IDENTITY_THRESHOLD,
            linkage_threshold=LINKAGE_THRESHOLD,
            appearance_gate=APPEARANCE_GATE,
            identity_model="dlib",
            detection_threshold=default_threshold if threshold is None else threshold,
            detector=detector_setting,
            n_keypoints=NUM_KEYPOINTS,
            weights=weights,
        )

    def detect(self, frames: Tensor) -> Detections:
        """Faces in frames Tensor[B, 3, H, W] uint8 RGB, in original-frame pixels (6 keypoints)."""
        return self.detector.detect(frames, threshold=self.threshold)

    def coarse_min_face(self, height: int, width: int) -> float | None:
        """Frame pixels: the smallest face :meth:`detect_coarse` looks for in frames this size;
        None when there is no cheaper scan (MediaPipe's whole-frame detectors, one-level scans)."""
        if not isinstance(self.detector, TiledDetector):
            return None
        return self.detector.coarse_min_face(height, width)

    def detect_coarse(self, frames: Tensor) -> Detections:
        """:meth:`detect` without the tiled scan's finest level (about two thirds of its cost at 720p):
        faces from :meth:`coarse_min_face` up (see :mod:`facecli.models.lite.tiling`)."""
        return self.detector.detect(frames, threshold=self.threshold, coarse=True)

    def networks(self) -> dict[str, Network]:
        """The networks whose forward passes do the compute, by name, and how they run best: on
        CPU all are faster channels-last and none gains from bfloat16 (small depthwise nets;
        measured, docs/performance.md), so ``--precision`` leaves them in float32."""
        nets = {name: Network(net, channels_last=True, channels_last_bf16=True) for name, net in
                (("facemesh", self.mesh.net), ("iris", self.iris), ("fer", self.emotion.net), ("dlib", self.identity.net))}
        inner = getattr(self.detector, "detector", self.detector)  # the tiled detector wraps BlazeFace's
        blazeface = getattr(inner, "model", None)  # channels-last, as its detector feeds it
        if isinstance(blazeface, torch.nn.Module):
            nets = {"blazeface": Network(blazeface, channels_last=True, channels_last_bf16=True), **nets}
        return nets

    @torch.inference_mode()
    def analyze(self, frames: Tensor, detections: Detections, identity: bool = True) -> FaceResults:
        """Mesh, pose, emotions and identity of every detected face, one batched call per model.

        Args:
            frames: Tensor[B, 3, H, W] uint8 RGB on the set's device.
            detections: from :meth:`detect` on the same frames (or faces placed as if detected,
                see facecli.pipeline.follow).
            identity: compute the identity embeddings (False: left NaN, for a caller that
                carries them from an earlier frame).

        Returns:
            FaceResults with mesh, pose, emotions, identity and the 6 detector keypoints; AUs,
            valence/arousal, gaze and blendshapes None.
        """
        return self.complete(frames, self.locate(frames, detections), identity)

    @torch.inference_mode()
    def locate(self, frames: Tensor, detections: Detections) -> FaceResults:
        """The first half of :meth:`analyze`: the 468-point mesh of every face, what following a
        face needs (the iris rows 468-477 NaN; NaN everywhere when the mesh finds no face).
        Identity is NaN, pose and emotions are None until :meth:`complete`."""
        n = len(detections)
        boxes = detections.boxes.to(self.device).float()
        keypoints = detections.landmarks.to(self.device).float()
        mesh = torch.full((n, MESH_POINTS, 3), float("nan"), device=self.device)
        if n:
            with stage("mesh"):  # uint8 frames: the warps gather only the pixels they read
                mesh468, presence = self.mesh.run(frames, detections.frame.to(self.device), keypoints, boxes)
            ok = (presence >= MIN_PRESENCE).nonzero()[:, 0]
            mesh[ok, :MESH_CORE] = mesh468[ok].float()
        return FaceResults(
            frame=detections.frame,
            boxes=boxes,
            scores=detections.scores.float(),
            landmarks5=keypoints,
            mesh=mesh,
            identity=torch.full((n, IDENTITY_DIM), float("nan"), device=self.device),
        )

    @torch.inference_mode()
    def complete(self, frames: Tensor, located: FaceResults, identity: bool = True) -> FaceResults:
        """The second half of :meth:`analyze`: iris, identity (unless ``identity`` is False: kept as
        ``located`` has it), emotions and pose of faces :meth:`locate` found in ``frames``.

        Nothing here feeds the next frame's crop, so a caller that follows faces one frame at a
        time may locate frame by frame and complete the faces of many frames in one call (the
        iris network runs 2.5x faster per eye on 16 eyes than on 2): ``located.frame`` indexes
        ``frames`` whichever frames were located together. The face's ``boxes`` place the
        emotion crop.
        """
        n = len(located)
        frame_idx = located.frame.to(self.device)
        mesh = located.mesh.clone()
        embeddings = located.identity
        if identity:
            embeddings = torch.full((n, IDENTITY_DIM), float("nan"), device=self.device)
        if n == 0:
            emotions = torch.zeros(0, len(EMOTION_NAMES), device=self.device)
        else:
            ok = torch.isfinite(mesh[:, :MESH_CORE]).all(dim=2).all(dim=1).nonzero()[:, 0]
            if len(ok):
                with stage("iris"):
                    refined = refine_with_iris(frames, frame_idx[ok], mesh[ok, :MESH_CORE], self.iris)  # [M, 478, 3]
                mesh[ok] = refined.float()
                if identity:
                    with stage("identity"):
                        points5 = refined[:, list(MESH_TO_DLIB_5), :2]
                        embeddings[ok] = self.identity.embed(frames, frame_idx[ok], points5).float()
            with stage("emotion"):
                emotions = self.emotion.predict(frames, frame_idx, located.boxes).float()
        with stage("pose"):
            pose = head_pose(mesh, self.canonical)
        return dataclasses.replace(located, mesh=mesh, pose=pose, emotions=emotions, identity=embeddings)


def load_lite(
    device: torch.device | str = "cpu",
    threshold: float | None = None,
    detector: str = "tiled",
    detect_size: int | None = None,
    min_face: float = DEFAULT_MIN_FACE,
) -> LiteSet:
    """Build the lite set from the packaged weights.

    Args:
        device: where to run.
        threshold: BlazeFace score a face must reach; None: the detector's default (0.7 tiled;
            MediaPipe's 0.5 short range, 0.6 full range).
        detector: "tiled" (the short-range network over the frame at every scale it needs: faces
            from ``min_face`` pixels to the whole frame; see :mod:`facecli.models.lite.tiling`),
            "short" (MediaPipe's: the whole frame letterboxed to 128 pixels; faces wider than about
            a fifth of the frame) or "full" (the whole frame at 192 pixels; smaller, farther faces).
        detect_size: ignored: BlazeFace samples the frame at its own scales, so a smaller
            detection size would change nothing.
        min_face: tiled detection's smallest face, frame pixels (unused by "short" and "full").

    Raises:
        WeightsError: a packaged file is missing or does not match its model.
        ValueError: unknown detector variant.
    """
    from facecli.models.lite.files import lite_file

    del detect_size  # see the docstring
    device = torch.device(device)
    if detector not in ("tiled", "short", "full"):
        raise ValueError(f"unknown lite detector {detector!r}; choose 'tiled', 'short' or 'full'")
    variant = "full" if detector == "full" else "short"
    roles = (f"blazeface_{variant}", "facemesh", "iris", "fer", "dlib_resnet", "canonical_face")
    paths = {role: lite_file(role).path for role in roles}
    blazeface = load_blazeface(variant, device)
    return LiteSet(
        detector=TiledDetector(blazeface, min_face) if detector == "tiled" else blazeface,
        mesh=load_facemesh(paths["facemesh"], device),
        iris=load_iris(paths["iris"], device),
        emotion=load_fer(paths["fer"], device),
        identity=load_dlib_resnet(paths["dlib_resnet"], device),
        canonical=load_canonical_face(paths["canonical_face"], device),
        device=device,
        threshold=threshold,
        weights=tuple((role, str(path)) for role, path in paths.items()),
    )
