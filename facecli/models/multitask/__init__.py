"""feat-v2 multitask model: AUs, emotion, valence/arousal, gaze, mesh, pose, blendshapes."""

from facecli.models.multitask.config import (
    AU_NAMES_20,
    EMOTION_NAMES_7,
    EMOTION_NAMES_8,
    MultitaskConfig,
    UnsupportedModelConfig,
)
from facecli.models.multitask.loading import load_multitask
from facecli.models.multitask.model import FaceMultitaskV2, MultitaskOutput, RawHeads

__all__ = [
    "AU_NAMES_20",
    "EMOTION_NAMES_7",
    "EMOTION_NAMES_8",
    "FaceMultitaskV2",
    "MultitaskConfig",
    "MultitaskOutput",
    "RawHeads",
    "UnsupportedModelConfig",
    "load_multitask",
]
