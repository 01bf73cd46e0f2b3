"""Processing: a work unit's frame batches -> per-face measurements, with the unit's own state.

The stages of one batch are: frames to the model set's device, detection, per-face models.
State that lives across the batches of one unit (face tracks, for example) belongs to the
:class:`UnitProcessor` and is saved with every checkpoint (:meth:`UnitProcessor.state_dict`), so a
resumed unit continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

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


class UnitProcessor:
    """Turns the frame batches of one work unit, in order, into FaceResults.

    Args:
        model_set: the loaded models.
        state: a :meth:`state_dict` saved by an interrupted run of the same unit, or None.
    """

    def __init__(self, model_set: ModelSet, state: dict | None = None) -> None:
        self.model_set = model_set
        if state:
            self.load_state_dict(state)

    def __call__(self, batch: FrameBatch) -> FaceResults:
        return measure(self.model_set, batch)

    def state_dict(self) -> dict:
        """Everything needed to continue after the last batch (JSON values and numpy arrays)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state  # no cross-batch state yet
