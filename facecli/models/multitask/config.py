"""Configuration of the feat-v2 multitask model, as stored in the weight file's metadata.

The published file (``py-feat/face_multitask_v2`` / ``face_multitask_v28.safetensors``) keeps
its model configuration as JSON under the safetensors metadata key ``"config"``. Every field
and default of py-feat 2.1.5's configuration is mirrored here so that any released file can be
described; :meth:`MultitaskConfig.check_supported` then says whether facecli can build it.

facecli builds one family: ``use_head_v3=True`` with ``drop_mefl=True`` (released v2.5+), a
ConvNeXt-V2 Tiny backbone, normalised mesh coordinates and any combination of the v2.6 gaze
options. Everything else fails loudly with :class:`UnsupportedModelConfig`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from facecli.models.weights import WeightsError

# Action units in the order the 20-AU heads emit them (n_au == 20).
AU_NAMES_20: tuple[str, ...] = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU11", "AU12",
    "AU14", "AU15", "AU17", "AU20", "AU23", "AU24", "AU25", "AU26", "AU28", "AU43",
)
# Emotion classes in head order; the 8-class head appends Contempt.
EMOTION_NAMES_7: tuple[str, ...] = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger")
EMOTION_NAMES_8: tuple[str, ...] = EMOTION_NAMES_7 + ("Contempt",)

SUPPORTED_BACKBONE = "convnextv2_tiny"


class UnsupportedModelConfig(WeightsError):
    """The weight file describes a model variant that facecli does not implement."""


@dataclass(frozen=True)
class MultitaskConfig:
    """Model configuration of a feat-v2 multitask checkpoint (field names as in the file)."""

    backbone: str = "convnextv2_tiny.fcmae_ft_in22k_in1k"  # timm name; only the architecture part matters
    image_size: int = 224  # model input side in pixels
    n_au: int = 24  # number of action-unit outputs
    n_mesh: int = 478  # mesh vertices (MediaPipe topology)
    n_emotion: int = 8  # emotion classes
    n_blendshape: int = 0  # blendshape outputs; 0 = no blendshape head
    mesh_normalized: bool = False  # mesh x, y in [0, 1] over the chip (True) or in input pixels
    bs_use_mesh: bool = True  # blendshape head also reads the projected mesh x, y
    knn_k: int = 4  # neighbours per AU node in the feature graph
    afg_channels: int = 512  # channels of the projected map and of every AU node
    mefl_channels: int = 512  # node width read by the similarity head
    gcn_layers: int = 2  # edge-GCN depth (training-era MEFL only)
    drop_path_rate: float = 0.1  # training only
    pretrained: bool = True  # training only; facecli never downloads backbone weights
    emotion_head_dropout: float = 0.25  # training only
    use_dual_eye_gcn: bool = True  # pre-v2.3 gaze head only
    mefl_identity_init: bool = False  # training only
    mefl_use_layer_scale: bool = True  # MEFL only
    use_head_v2: bool = False  # v2.1 emotion/gaze heads
    use_head_v3: bool = False  # v2.3+ unified-feature heads
    unified_lmk_dim: int = 256  # width of the projected mesh in the unified features
    drop_mefl: bool = False  # v2.4+: the similarity head reads the feature-graph output directly
    emotion_use_au_prob: bool = False  # emotion/VA heads also read the AU probabilities
    emotion_au_prob_detach: bool = True  # training only
    gaze_eye_roi: bool = False  # gaze reads pooled stride-16 features around each eye
    gaze_eye_dim: int = 256  # per-eye feature width
    gaze_eye_roi_size: int = 4  # roi_align output grid side
    gaze_eye_box_frac: float = 0.18  # eye box side as a fraction of image_size
    gaze_pose_6d: bool = False  # gaze reads the predicted head rotation (6D representation)
    gaze_pose_detach: bool = True  # training only
    gaze_head_frame: bool = False  # gaze predicted in the head frame, rotated by the predicted pose
    gaze_hidden: int = 0  # > 0: each per-eye gaze branch is a one-hidden-layer MLP
    gaze_bins: int = 0  # > 0: per-axis classification over bins, output = expectation
    gaze_bin_lo_deg: float = -180.0  # lower edge of the gaze bins, degrees
    gaze_bin_hi_deg: float = 180.0  # upper edge of the gaze bins, degrees

    @classmethod
    def from_metadata(cls, metadata_json: str | Mapping[str, Any]) -> MultitaskConfig:
        """Build a config from the file's ``"config"`` metadata (JSON text or a parsed dict).

        Unknown fields are ignored. Values are type-checked against the field defaults
        (an int is accepted where a float is expected).

        Raises:
            WeightsError: when the text is not JSON, not an object, or a value has the wrong type.
        """
        if isinstance(metadata_json, (str, bytes)):
            try:
                metadata_json = json.loads(metadata_json)
            except json.JSONDecodeError as exc:
                raise WeightsError(f"multitask config is not valid JSON ({exc})") from None
        if not isinstance(metadata_json, Mapping):
            raise WeightsError(f"multitask config must be a JSON object, got {type(metadata_json).__name__}")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in metadata_json:
                values[f.name] = _checked(f.name, metadata_json[f.name], type(f.default))
        return cls(**values)

    @property
    def backbone_arch(self) -> str:
        """The timm architecture name without the pretrained tag (``convnextv2_tiny``)."""
        return self.backbone.split(".", 1)[0]

    @property
    def au_names(self) -> tuple[str, ...]:
        """AU names in output order (requires a supported ``n_au``)."""
        if self.n_au != len(AU_NAMES_20):
            raise UnsupportedModelConfig(f"no AU names known for n_au={self.n_au}")
        return AU_NAMES_20

    @property
    def emotion_names(self) -> tuple[str, ...]:
        """Emotion names in output order (requires a supported ``n_emotion``)."""
        names = {7: EMOTION_NAMES_7, 8: EMOTION_NAMES_8}.get(self.n_emotion)
        if names is None:
            raise UnsupportedModelConfig(f"no emotion names known for n_emotion={self.n_emotion}")
        return names

    def check_supported(self) -> None:
        """Raise :class:`UnsupportedModelConfig` naming the first flag facecli cannot build."""
        required: list[tuple[str, Any, Any]] = [
            ("use_head_v3", self.use_head_v3, True),
            ("drop_mefl", self.drop_mefl, True),
            ("use_head_v2", self.use_head_v2, False),
            ("mesh_normalized", self.mesh_normalized, True),
            ("n_mesh", self.n_mesh, 478),
            ("image_size", self.image_size, 224),
            ("n_au", self.n_au, len(AU_NAMES_20)),
        ]
        if self.backbone_arch != SUPPORTED_BACKBONE:
            raise UnsupportedModelConfig(
                f"unsupported multitask config: backbone={self.backbone!r} (facecli supports {SUPPORTED_BACKBONE})"
            )
        for name, value, wanted in required:
            if value != wanted:
                raise UnsupportedModelConfig(
                    f"unsupported multitask config: {name}={value!r} (facecli supports {name}={wanted!r})"
                )
        if self.n_emotion not in (7, 8):
            raise UnsupportedModelConfig(f"unsupported multitask config: n_emotion={self.n_emotion} (7 or 8)")
        if self.n_blendshape <= 0:
            raise UnsupportedModelConfig(
                f"unsupported multitask config: n_blendshape={self.n_blendshape} (a blendshape head is required)"
            )
        if self.mefl_channels != self.afg_channels:
            raise UnsupportedModelConfig(
                f"unsupported multitask config: mefl_channels={self.mefl_channels} must equal "
                f"afg_channels={self.afg_channels} when drop_mefl=True"
            )
        if not 1 <= self.knn_k < self.n_au:
            raise UnsupportedModelConfig(f"unsupported multitask config: knn_k={self.knn_k} (1..n_au-1)")
        if self.gaze_bins and self.gaze_head_frame:
            raise UnsupportedModelConfig(
                f"unsupported multitask config: gaze_bins={self.gaze_bins} with gaze_head_frame=True "
                "(mutually exclusive)"
            )
        positive = ("afg_channels", "unified_lmk_dim", "gaze_eye_dim", "gaze_eye_roi_size")
        for name in positive:
            if getattr(self, name) <= 0:
                raise UnsupportedModelConfig(f"unsupported multitask config: {name}={getattr(self, name)} (> 0)")
        for name in ("gaze_bins", "gaze_hidden"):
            if getattr(self, name) < 0:
                raise UnsupportedModelConfig(f"unsupported multitask config: {name}={getattr(self, name)} (>= 0)")
        if self.gaze_bins and not self.gaze_bin_lo_deg < self.gaze_bin_hi_deg:
            raise UnsupportedModelConfig(
                f"unsupported multitask config: gaze_bin_lo_deg={self.gaze_bin_lo_deg} must be below "
                f"gaze_bin_hi_deg={self.gaze_bin_hi_deg}"
            )


def _checked(name: str, value: Any, kind: type) -> Any:
    """Return ``value`` if it fits the field type ``kind`` (bool, int, float or str)."""
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise WeightsError(f"multitask config field {name}={value!r} is not a {kind.__name__}")
    return value
