"""Processing: a work unit's frame batches -> per-face measurements, with the unit's own state.

The stages of one batch are: frames to the model set's device, detection, per-face models, and
for videos face tracking (:class:`facecli.identity.tracking.FaceTracker`: a ``track`` per face).
State that lives across the batches of one unit (the tracks) belongs to the
:class:`UnitProcessor` and is saved with every checkpoint (:meth:`UnitProcessor.state_dict`), so a
resumed unit continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

import torch
from torch import Tensor

from facecli.identity.tracking import FaceTracker, TrackerConfig
from facecli.types import Detections, FaceResults, FrameBatch, ModelSetInfo


class ModelSet(Protocol):
    """A detector plus per-face models behind one interface."""

    info: ModelSetInfo
    device: torch.device

    def detect(self, frames: Tensor) -> Detections:
        """frames: Tensor[B, 3, H, W] uint8 RGB on the set's device."""

    def analyze(self, frames: Tensor, detections: Detections) -> FaceResults:
        """Per-face measurements in frame pixels for the detections of ``frames``."""


@torch.inference_mode()
def measure(model_set: ModelSet, batch: FrameBatch) -> FaceResults:
    """Detection and per-face models on one batch (stateless)."""
    frames = batch.images.to(model_set.device, non_blocking=True).contiguous()
    detections = model_set.detect(frames)
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
    """

    def __init__(self, model_set: ModelSet, track: bool = False, state: dict | None = None) -> None:
        self.model_set = model_set
        self.tracker = FaceTracker(tracker_config(model_set.info)) if track else None
        if state:
            self.load_state_dict(state)

    def __call__(self, batch: FrameBatch) -> FaceResults:
        results = measure(self.model_set, batch)
        if self.tracker is None:
            return results
        ids = self.tracker.update(batch.images, batch.index, results.boxes, results.scores, results.frame,
                                  results.identity)
        return replace(results, track=ids)

    @property
    def num_tracks(self) -> int:
        return 0 if self.tracker is None else self.tracker.num_tracks

    def state_dict(self) -> dict:
        """Everything needed to continue after the last batch (JSON values and numpy arrays)."""
        return {} if self.tracker is None else {"tracker": self.tracker.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.tracker is not None and "tracker" in state:
            self.tracker.load_state_dict(state["tracker"])
