"""The feat-v2 model set: RetinaFace-R34 -> square-pad 256 chips -> face_multitask_v2 -> ArcFace/FaceNet.

Geometry and conventions follow py-feat's Detectorv2, with the sign conventions of facecli's
design document: Pitch = +pose[0], Roll = -pose[2], Yaw = +pose[1]; gaze_pitch = +gaze[1],
gaze_yaw = gaze[0] (radians).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from facecli.models.runtime import Network
from facecli.ops.crops import crop_square_pad, resize_longest
from facecli.timing import stage
from facecli.types import Detections, FaceResults, ModelSetInfo

CHIP_SIZE = 256  # side of the square face chip fed to the multitask and identity models
DETECTION_THRESHOLD = 0.5  # RetinaFace score a face must reach (py-feat's)
IDENTITY_THRESHOLD = 0.8  # cosine similarity to join an identity (py-feat's, for ArcFace and FaceNet)
# Track linkage and the tracker's appearance gate: ArcFace/FaceNet embeddings are centred (unrelated
# faces near cosine 0, one person's faces mostly above 0.4); 0.5 and 0.3 sit between the two, but
# real weights cannot be downloaded here to measure them: choose on your own data (docs/identities.md).
LINKAGE_THRESHOLD = 0.5
APPEARANCE_GATE = 0.3
EXPAND_BBOX = 1.2  # margin around the detector box before squaring


class FeatV2Set:
    """RetinaFace + multitask + optional identity network, batched on one device.

    Args:
        detector: a loaded RetinaFaceDetector.
        multitask: a loaded FaceMultitaskV2.
        identity: ArcFaceEmbedder / FaceNetEmbedder or None.
        device: where every model runs.
        threshold: detector score a face must reach (None: :data:`DETECTION_THRESHOLD`).
        detect_size: None to detect on the full frame (as the reference), or the longest side in pixels.
        weights: (role, path) of every weight file, for the output metadata.
    """

    def __init__(
        self,
        detector: nn.Module,
        multitask: nn.Module,
        identity: nn.Module | None,
        device: torch.device,
        threshold: float | None = None,
        detect_size: int | None = None,
        weights: tuple[tuple[str, str], ...] = (),
        identity_model: str = "arcface",
    ) -> None:
        self.device = device
        self.detector = detector.to(device).eval()
        self.multitask = multitask.to(device).eval()
        self.identity = identity.to(device).eval() if identity is not None else None
        self.threshold = DETECTION_THRESHOLD if threshold is None else threshold
        self.detect_size = detect_size
        cfg = multitask.config
        self.info = ModelSetInfo(
            name="feat-v2",
            au_names=tuple(multitask.au_names),
            emotion_names=tuple(multitask.emotion_names),
            valence_arousal=True,
            gaze=True,
            pose=True,
            blendshapes=cfg.n_blendshape > 0,
            identity_dim=512 if identity is not None else 0,
            identity_threshold=IDENTITY_THRESHOLD,
            linkage_threshold=LINKAGE_THRESHOLD,
            appearance_gate=APPEARANCE_GATE if identity is not None else None,
            identity_model=identity_model if identity is not None else "none",
            detection_threshold=self.threshold,
            n_keypoints=5,
            weights=weights,
        )

    def detect(self, frames: Tensor) -> Detections:
        """Faces in frames Tensor[B, 3, H, W] uint8 RGB, in original-frame pixels."""
        if self.detect_size is None:
            return self.detector.detect(frames, threshold=self.threshold)
        small, scale = resize_longest(frames, self.detect_size)
        dets = self.detector.detect(small, threshold=self.threshold)
        if scale == 1.0:
            return dets
        return Detections(
            boxes=dets.boxes / scale, scores=dets.scores, landmarks=dets.landmarks / scale, frame=dets.frame
        )

    def networks(self) -> dict[str, Network]:
        """The networks whose forward passes do the compute, by name, and how they run best on CPU
        (measured, docs/performance.md): all three gain from bfloat16 where the hardware has it,
        and then run channels-last (RetinaFace 3.4x, the identity networks 1.8x, the multitask
        model 1.14x at 8 faces). In float32 RetinaFace and the identity networks also run
        channels-last (720p RetinaFace 635 -> 545 ms, ArcFace 10-14% faster); the multitask model
        gained nothing there and keeps NCHW. ``--precision exact`` keeps all three in py-feat's own
        NCHW layout, so its arithmetic is py-feat's operation for operation."""
        exact = {"channels_last_exact": False, "bf16": True, "channels_last_bf16": True}
        nets = {"retinaface": Network(self.detector.net, channels_last=True, **exact),
                "multitask": Network(self.multitask, channels_last=False, **exact)}
        if self.identity is not None:
            nets[self.info.identity_model] = Network(self.identity.net, channels_last=True, **exact)
        return nets

    def analyze(self, frames: Tensor, detections: Detections, identity: bool = True) -> FaceResults:
        """Multitask heads and (unless ``identity`` is False) identity for every detected face,
        mapped back to the frame."""
        if len(detections) == 0:
            return FaceResults(frame=detections.frame, boxes=detections.boxes, scores=detections.scores)
        with stage("crop"):
            chips = crop_square_pad(frames, detections.boxes, detections.frame, CHIP_SIZE, EXPAND_BBOX)
        out = self.multitask.predict(chips.pixels)
        mesh_xy = chips.to_frame(out.mesh[..., :2].float())
        mesh = torch.cat([mesh_xy, out.mesh[..., 2:].float()], dim=-1)
        p = out.pose.float()
        pose = torch.stack([p[:, 0], -p[:, 2], p[:, 1], p[:, 3], p[:, 4], p[:, 5]], dim=1)
        gaze = torch.stack([out.gaze[:, 1], out.gaze[:, 0]], dim=1).float()  # (pitch, yaw)
        identity = self.identity(chips.pixels).float() if self.identity is not None and identity else None
        return FaceResults(
            frame=detections.frame,
            boxes=chips.boxes,
            scores=detections.scores,
            landmarks5=detections.landmarks,
            mesh=mesh,
            pose=pose,
            aus=out.au.float(),
            emotions=out.emotion.float(),
            valence_arousal=torch.stack([out.valence, out.arousal], dim=1).float(),
            gaze=gaze,
            identity=identity,
            blendshapes=out.blendshapes.float() if self.info.blendshapes else None,
        )


def load_featv2(
    paths: dict[str, Path],
    device: torch.device,
    identity_model: str = "arcface",
    threshold: float | None = None,
    detect_size: int | None = None,
) -> FeatV2Set:
    """Build the set from resolved weight files.

    Args:
        paths: role -> file for "retinaface", "multitask" and, unless identity_model is "none",
            the identity network's role ("arcface" or "facenet").
    """
    from facecli.models.multitask import load_multitask
    from facecli.models.retinaface import load_retinaface

    identity: nn.Module | None = None
    if identity_model == "arcface":
        from facecli.models.arcface import load_arcface

        identity = load_arcface(paths["arcface"])
    elif identity_model == "facenet":
        from facecli.models.facenet import load_facenet

        identity = load_facenet(paths["facenet"])
    return FeatV2Set(
        detector=load_retinaface(paths["retinaface"]),
        multitask=load_multitask(paths["multitask"]),
        identity=identity,
        device=device,
        threshold=threshold,
        detect_size=detect_size,
        weights=tuple((role, str(p)) for role, p in paths.items()),
        identity_model=identity_model,
    )
