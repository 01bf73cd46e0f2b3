"""The output schema: the one module that knows column names, order, types and conventions.

Column order follows py-feat's Detectorv2 (``FaceRectX`` ... ``Identity``), then facecli's own
columns. A model set that cannot produce a group (the lite set has no AUs, for example)
leaves that group's columns out of the file instead of filling them with NaN.

Sign conventions (facecli's design document): Pitch = +pose[0], Roll = -pose[2],
Yaw = +pose[1], X/Y/Z = pose[3:6]; angles in radians. gaze_pitch and gaze_yaw in radians,
gaze_angle = arccos(cos(pitch) * cos(yaw)).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from facecli.types import FaceResults, FrameBatch

# The 68 dlib-style landmarks as a subset of the 478-point mesh.
DLIB68_FROM_MESH = (
    127, 234, 93, 132, 58, 172, 136, 150, 176, 148, 152, 377, 400, 379, 365, 397, 356, 70, 63, 105,
    66, 107, 336, 296, 334, 293, 300, 168, 6, 195, 4, 240, 75, 1, 305, 460, 33, 160, 158, 133, 153,
    144, 362, 385, 387, 263, 373, 380, 61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82,
    13, 312, 308, 317, 14, 87,
)

BLENDSHAPE_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)

METADATA_KEY = b"facecli"


@dataclass(frozen=True)
class OutputLayout:
    """Which column groups a run writes. Built from the model set and the input kind."""

    model_set: str  # "feat-v2" or "lite"
    video: bool  # adds approx_time and time_s
    au_names: tuple[str, ...] = ()  # empty: no AU columns
    emotion_names: tuple[str, ...] = ()  # empty: no emotion columns
    valence_arousal: bool = False
    gaze: bool = False
    pose: bool = True
    identity_dim: int = 0  # 0: no Identity_* columns
    n_mesh: int = 478
    blendshapes: bool = False
    n_keypoints: int = 5  # detector keypoints kept as kp_x_* / kp_y_*

    def float_columns(self) -> list[str]:
        """Numeric per-face columns in file order (before the frame/input columns)."""
        cols = ["FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight", "FaceScore"]
        cols += [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
        if self.pose:
            cols += ["Pitch", "Roll", "Yaw", "X", "Y", "Z"]
        cols += list(self.au_names) + list(self.emotion_names)
        if self.valence_arousal:
            cols += ["valence", "arousal"]
        if self.gaze:
            cols += ["gaze_pitch", "gaze_yaw", "gaze_angle"]
        cols += [f"Identity_{i + 1}" for i in range(self.identity_dim)]
        for axis in "xyz":
            cols += [f"mesh_{axis}_{i}" for i in range(self.n_mesh)]
        if self.blendshapes:
            cols += list(BLENDSHAPE_NAMES)
        return cols

    def extra_float_columns(self) -> list[str]:
        """facecli's own numeric columns, after the reference ones."""
        return [f"kp_x_{i}" for i in range(self.n_keypoints)] + [f"kp_y_{i}" for i in range(self.n_keypoints)]

    def arrow_schema(self, metadata: dict[str, object] | None = None) -> pa.Schema:
        fields = [pa.field(c, pa.float32()) for c in self.float_columns()]
        fields += [pa.field("FrameHeight", pa.int32()), pa.field("FrameWidth", pa.int32())]
        fields += [pa.field("input", pa.string()), pa.field("frame", pa.int64())]
        if self.video:
            fields.append(pa.field("approx_time", pa.string()))
        fields.append(pa.field("Identity", pa.string()))
        fields += [pa.field(c, pa.float32()) for c in self.extra_float_columns()]
        if self.video:
            fields.append(pa.field("time_s", pa.float64()))
        meta = {METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()} if metadata else None
        return pa.schema(fields, metadata=meta)


def _rows(results: FaceResults, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Map output rows to frames and faces: every face is a row; a frame with none gets one empty row.

    Returns:
        row_frame: int64[R] frame position of each row; row_face: int64[R] face index or -1.
    """
    face_frame = results.frame.cpu().numpy()
    counts = np.bincount(face_frame, minlength=n_frames)
    per_frame = np.maximum(counts, 1)
    row_frame = np.repeat(np.arange(n_frames), per_frame)
    row_face = np.full(row_frame.shape[0], -1, dtype=np.int64)
    has = np.repeat(counts > 0, per_frame)
    order = np.argsort(face_frame, kind="stable")
    row_face[has] = order
    return row_frame, row_face


def _take(values: torch.Tensor | np.ndarray | None, row_face: np.ndarray, width: int) -> np.ndarray:
    """Rows of a per-face [N, width] array, NaN where the row has no face (or no values)."""
    out = np.full((row_face.shape[0], width), np.nan, dtype=np.float32)
    if values is None:
        return out
    arr = values.detach().float().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    arr = arr.reshape(arr.shape[0], width)
    has = row_face >= 0
    out[has] = arr[row_face[has]]
    return out


def face_matrix(layout: OutputLayout, results: FaceResults) -> dict[str, torch.Tensor | None]:
    """Per-face tensors in column-group order, converted to the output conventions."""
    boxes = results.boxes.float()
    rect = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2], results.scores.float()[:, None]], 1)
    groups: dict[str, torch.Tensor | None] = {"rect": rect}
    mesh = results.mesh
    if mesh is not None:
        idx = torch.tensor(DLIB68_FROM_MESH, device=mesh.device)
        lmk = mesh[:, idx, :2]
        groups["lmk68"] = torch.cat([lmk[..., 0], lmk[..., 1]], dim=1)
        groups["mesh"] = torch.cat([mesh[..., 0], mesh[..., 1], mesh[..., 2]], dim=1)
    else:
        groups["lmk68"] = groups["mesh"] = None
    if layout.pose:
        groups["pose"] = results.pose
    groups["aus"] = results.aus if layout.au_names else None
    groups["emotions"] = results.emotions if layout.emotion_names else None
    if layout.valence_arousal:
        groups["va"] = results.valence_arousal
    if layout.gaze:
        g = results.gaze
        groups["gaze"] = (
            None
            if g is None
            else torch.stack([g[:, 0], g[:, 1], torch.arccos((torch.cos(g[:, 0]) * torch.cos(g[:, 1])).clamp(-1, 1))], 1)
        )
    groups["identity"] = results.identity if layout.identity_dim else None
    if layout.blendshapes:
        groups["blendshapes"] = results.blendshapes
    return groups


def _group_widths(layout: OutputLayout) -> list[tuple[str, int]]:
    widths = [("rect", 5), ("lmk68", 136)]
    if layout.pose:
        widths.append(("pose", 6))
    widths += [("aus", len(layout.au_names)), ("emotions", len(layout.emotion_names))]
    if layout.valence_arousal:
        widths.append(("va", 2))
    if layout.gaze:
        widths.append(("gaze", 3))
    widths += [("identity", layout.identity_dim), ("mesh", 3 * layout.n_mesh)]
    if layout.blendshapes:
        widths.append(("blendshapes", 52))
    return [(name, w) for name, w in widths if w]


def approx_time(frame: int, fps: float) -> str:
    """The reference's MM:SS time of a frame number."""
    seconds = frame / fps if fps > 0 else 0.0
    return f"{int(seconds // 60):02d}:{int(seconds % 60):02d}"


def to_record_batch(
    layout: OutputLayout,
    schema: pa.Schema,
    batch: FrameBatch,
    results: FaceResults,
    identities: list[str | None],
    fps: float = 0.0,
) -> pa.RecordBatch:
    """Rows for one frame batch: one per face, and one NaN row for each frame without a face.

    Args:
        layout: the run's column groups.
        schema: ``layout.arrow_schema(...)`` of the run.
        batch: the frames.
        results: per-face measurements for these frames.
        identities: per-face identity labels (same order as ``results``), None for no label.
        fps: video frame rate, for the reference's approx_time column.
    """
    row_frame, row_face = _rows(results, len(batch))
    n_rows = row_frame.shape[0]
    groups = face_matrix(layout, results)
    blocks = [_take(groups.get(name), row_face, width) for name, width in _group_widths(layout)]
    numeric = np.concatenate(blocks, axis=1)
    no_face = row_face < 0
    numeric[no_face, 4] = 0.0  # FaceScore of an empty frame is 0, its predictions NaN
    columns: list[pa.Array] = [pa.array(col) for col in np.ascontiguousarray(numeric.T)]  # one copy, not one per column
    columns += [
        pa.array(np.full(n_rows, batch.height, dtype=np.int32)),
        pa.array(np.full(n_rows, batch.width, dtype=np.int32)),
        pa.array([batch.sources[f] for f in row_frame], type=pa.string()),
        pa.array(np.asarray(batch.index, dtype=np.int64)[row_frame]),
    ]
    if layout.video:
        columns.append(pa.array([approx_time(batch.index[f], fps) for f in row_frame], type=pa.string()))
    labels = [identities[f] if f >= 0 else None for f in row_face]
    columns.append(pa.array(labels, type=pa.string()))
    kp = results.landmarks5
    if kp is not None and kp.shape[1] != layout.n_keypoints:
        raise ValueError(f"model set gave {kp.shape[1]} keypoints, layout expects {layout.n_keypoints}")
    kp_flat = None if kp is None else torch.cat([kp[..., 0], kp[..., 1]], dim=1)
    kp_rows = _take(kp_flat, row_face, 2 * layout.n_keypoints)
    columns += [pa.array(col) for col in np.ascontiguousarray(kp_rows.T)]
    if layout.video:
        columns.append(pa.array(np.asarray(batch.time_s, dtype=np.float64)[row_frame]))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def read_metadata(schema: pa.Schema) -> dict[str, object]:
    """The facecli metadata stored in an output file's schema ({} when absent)."""
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}
