"""Processing: a work unit's frame batches -> per-face measurements, with the unit's own state.

The stages of one batch are: frames to the model set's device, detection, per-face models, and
for videos face tracking (:class:`facecli.identity.tracking.FaceTracker`: a ``track`` per face).
State that lives across the batches of one unit (the tracks) belongs to the
:class:`UnitProcessor` and is saved with every checkpoint (:meth:`UnitProcessor.state_dict`), so a
resumed unit continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Protocol

import torch
from torch import Tensor

from facecli.identity.tracking import FaceTracker, TrackerConfig
from facecli.models.runtime import Network
from facecli.ops.boxes import best_per_frame
from facecli.pipeline.follow import FaceFollower, FollowConfig
from facecli.timing import count, stage
from facecli.types import Detections, FaceResults, FrameBatch, ModelSetInfo


class ModelSet(Protocol):
    """A detector plus per-face models behind one interface."""

    info: ModelSetInfo
    device: torch.device

    def detect(self, frames: Tensor) -> Detections:
        """frames: Tensor[B, 3, H, W] uint8 RGB on the set's device."""

    def analyze(self, frames: Tensor, detections: Detections, identity: bool = True) -> FaceResults:
        """Per-face measurements in frame pixels for the detections of ``frames``
        (``detections.frame`` indexes ``frames``; frames without a face are allowed); with
        ``identity`` False the identity embeddings may be left out (None or NaN).

        A set may also offer ``locate(frames, detections)`` (the mesh, what following a face
        needs) and ``complete(frames, located, identity)`` (the rest), with ``analyze`` their
        composition: the follower then completes a whole batch of followed frames at once
        (facecli.pipeline.follow).

        A set may also offer ``coarse_min_face(height, width) -> float | None`` and
        ``detect_coarse(frames)``: a cheaper detection that looks only for faces of at least that
        many pixels (None: no such scan). The follower runs it on most scheduled detections and
        keeps following the smaller faces meanwhile."""

    def networks(self) -> dict[str, Network]:
        """The networks doing the compute, by name (facecli.models.runtime.Network records)."""


def to_device(model_set: ModelSet, batch: FrameBatch) -> Tensor:
    """The batch's uint8 frames on the model set's device, channels-last (as decoded: no copy on
    the CPU; the networks that prefer it read it directly, crops gather from it). On CUDA from
    pinned memory with an asynchronous copy, which overlaps whatever the device is still doing."""
    with stage("upload"):
        images = batch.images
        if model_set.device.type == "cuda":
            if not images.is_pinned():
                images = images.pin_memory()
            images = images.to(model_set.device, non_blocking=True)
        else:
            images = images.to(model_set.device)
        return images.contiguous(memory_format=torch.channels_last)


def detect(model_set: ModelSet, frames: Tensor, max_faces: int | None = None, coarse: bool = False) -> Detections:
    """The model set's detections in ``frames``; with ``max_faces`` only the best-scoring
    ``max_faces`` of each frame (``--max-faces``); ``coarse``: the set's ``detect_coarse``."""
    detections = model_set.detect_coarse(frames) if coarse else model_set.detect(frames)
    if max_faces is None:
        return detections
    return detections.take(best_per_frame(detections.frame, detections.scores, max_faces))


@torch.inference_mode()
def measure(model_set: ModelSet, batch: FrameBatch, max_faces: int | None = None) -> FaceResults:
    """Detection (the ``max_faces`` best of each frame, or all) and per-face models on one batch (stateless)."""
    frames = to_device(model_set, batch)
    with stage("detect"):
        detections = detect(model_set, frames, max_faces)
    with stage("analyze"):
        return model_set.analyze(frames, detections)


def tracker_config(info: ModelSetInfo) -> TrackerConfig:
    """The tracker settings a model set asks for (its embeddings' appearance gate)."""
    return TrackerConfig(appearance_gate=info.appearance_gate)


class UnitProcessor:
    """Turns the frame batches of one work unit, in order, into FaceResults.

    Args:
        model_set: the loaded models.
        track: link faces across frames (videos); FaceResults.track is then set.
        state: a :meth:`state_dict` saved by an interrupted run of the same unit, or None.
        detect_every: 1 detects on every frame (each batch measured on its own, as the
            reference); K > 1 detects on every Kth frame and follows faces in between
            (:class:`facecli.pipeline.follow.FaceFollower`).
        max_faces: keep the best-scoring ``max_faces`` faces of each detection (None: all).
    """

    def __init__(
        self, model_set: ModelSet, track: bool = False, state: dict | None = None, detect_every: int = 1,
        max_faces: int | None = None,
    ) -> None:
        self.model_set = model_set
        self.max_faces = max_faces
        self.tracker = FaceTracker(tracker_config(model_set.info)) if track else None
        shots = tracker_config(model_set.info)  # cuts seen alike by the follower and the tracker
        follow = FollowConfig(every=detect_every, shot_threshold=shots.shot_threshold, histogram_bins=shots.histogram_bins,
                              max_faces=max_faces)
        detector = functools.partial(detect, model_set, max_faces=max_faces)
        coarse = functools.partial(detect, model_set, max_faces=max_faces, coarse=True)
        self.follower = FaceFollower(model_set, follow, detector, coarse) if detect_every > 1 else None
        if state:
            self.load_state_dict(state)

    def __call__(self, batch: FrameBatch) -> FaceResults:
        hists = None
        if self.follower is None:
            results = measure(self.model_set, batch, self.max_faces)
            count("frames detected", len(batch.index))
        else:
            with torch.inference_mode():
                results = self.follower(to_device(self.model_set, batch))
            hists = self.follower.histograms  # the tracker's own (same bins), computed once
        if self.tracker is None:
            return results
        with stage("track"):
            ids = self.tracker.update(batch.images, batch.index, results.boxes, results.scores, results.frame,
                                      results.identity, histograms=hists)
        return replace(results, track=ids)

    @property
    def num_tracks(self) -> int:
        return 0 if self.tracker is None else self.tracker.num_tracks

    def state_dict(self) -> dict:
        """Everything needed to continue after the last batch (JSON values and numpy arrays)."""
        state = {}
        if self.tracker is not None:
            state["tracker"] = self.tracker.state_dict()
        if self.follower is not None:
            state["follower"] = self.follower.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if self.tracker is not None and "tracker" in state:
            self.tracker.load_state_dict(state["tracker"])
        if self.follower is not None and "follower" in state:
            self.follower.load_state_dict(state["follower"])
