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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor

from facecli.types import FaceResults, FrameBatch, ModelSetInfo

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
# Columns whose sign is the opposite of py-feat 2.1.5's Detectorv2 output for the same face:
# py-feat writes Pitch = -pose[0] and gaze_pitch = -gaze[1], facecli +pose[0] and +gaze[1] (see the
# module docstring). facecli.to_pyfeat negates them; the parity tests check the pair against py-feat.
PYFEAT_NEGATED = ("Pitch", "gaze_pitch")


RECT_COLUMNS = ("FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight", "FaceScore")
LANDMARK_COLUMNS = tuple(f"x_{i}" for i in range(68)) + tuple(f"y_{i}" for i in range(68))
POSE_COLUMNS = ("Pitch", "Roll", "Yaw", "X", "Y", "Z")
VALENCE_AROUSAL_COLUMNS = ("valence", "arousal")
GAZE_COLUMNS = ("gaze_pitch", "gaze_yaw", "gaze_angle")
N_MESH = 478
MESH_COLUMNS = tuple(f"mesh_{axis}_{i}" for axis in "xyz" for i in range(N_MESH))


@dataclass(frozen=True)
class OutputLayout:
    """Which column groups a run writes. Built from the model set's info and the input kind."""

    model_set: str  # "feat-v2" or "lite"
    video: bool  # adds approx_time and time_s
    au_names: tuple[str, ...] = ()  # empty: no AU columns
    emotion_names: tuple[str, ...] = ()  # empty: no emotion columns
    valence_arousal: bool = False
    gaze: bool = False
    pose: bool = True
    identity_dim: int = 0  # 0: no Identity_* columns
    blendshapes: bool = False
    n_keypoints: int = 5  # detector keypoints kept as kp_x_* / kp_y_*
    tracks: bool = False  # adds the integer `track` column

    @staticmethod
    def for_set(info: ModelSetInfo, video: bool, tracks: bool = False) -> "OutputLayout":
        return OutputLayout(
            model_set=info.name,
            video=video,
            au_names=info.au_names,
            emotion_names=info.emotion_names,
            valence_arousal=info.valence_arousal,
            gaze=info.gaze,
            pose=info.pose,
            identity_dim=info.identity_dim,
            blendshapes=info.blendshapes,
            n_keypoints=info.n_keypoints,
            tracks=tracks,
        )

    def groups(self, extra: bool | None = None) -> list[tuple["ColumnGroup", tuple[str, ...]]]:
        """(group, its columns) of every group this layout writes, in file order.

        Args:
            extra: None for all groups; False for the reference groups only; True for facecli's own.
        """
        out = []
        for group in FACE_GROUPS:
            if extra is not None and group.extra != extra:
                continue
            cols = group.columns(self)
            if cols:
                out.append((group, cols))
        return out

    def left_out(self) -> list[str]:
        """Names of the column groups this layout cannot fill (recorded in the file's metadata)."""
        return [g.name for g in FACE_GROUPS if g.optional and not g.columns(self)]

    def float_columns(self) -> list[str]:
        """Numeric per-face columns in file order (before the frame/input columns)."""
        return [c for _, cols in self.groups(extra=False) for c in cols]

    def extra_float_columns(self) -> list[str]:
        """facecli's own numeric per-face columns, after the reference ones."""
        return [c for _, cols in self.groups(extra=True) for c in cols]

    def reference_names(self) -> list[str]:
        """The columns py-feat's Detectorv2 writes too, in file order (``FaceRectX`` ... ``Identity``);
        the rest (``kp_*``, ``track``, ``time_s``) are facecli's own."""
        names = self.arrow_schema().names
        return names[: names.index("Identity") + 1]

    def arrow_schema(self, metadata: dict[str, object] | None = None) -> pa.Schema:
        fields = [pa.field(c, pa.float32()) for c in self.float_columns()]
        fields += [pa.field("FrameHeight", pa.int32()), pa.field("FrameWidth", pa.int32())]
        fields += [pa.field("input", pa.string()), pa.field("frame", pa.int64())]
        if self.video:
            fields.append(pa.field("approx_time", pa.string()))
        fields.append(pa.field("Identity", pa.string()))
        fields += [pa.field(c, pa.float32()) for c in self.extra_float_columns()]
        if self.tracks:
            fields.append(pa.field("track", pa.int64()))
        if self.video:
            fields.append(pa.field("time_s", pa.float64()))
        meta = {METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()} if metadata else None
        return pa.schema(fields, metadata=meta)


@dataclass(frozen=True)
class ColumnGroup:
    """One group of per-face float32 columns, declared once.

    columns: the group's column names for a layout (empty: the layout leaves the group out).
    values: the group's per-face values, Tensor[N, len(columns)] in the output conventions, or
        None when the results do not hold them (the columns are then NaN).
    optional: a model set may leave the group out (its name is then recorded as left out).
    extra: facecli's own group, written after the reference columns.
    """

    name: str
    columns: Callable[[OutputLayout], tuple[str, ...]]
    values: Callable[[FaceResults], Tensor | None]
    optional: bool = True
    extra: bool = False


def _rect(r: FaceResults) -> Tensor:
    boxes = r.boxes.float()
    return torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2], r.scores.float()[:, None]], 1)


def _landmarks68(r: FaceResults) -> Tensor | None:
    if r.mesh is None:
        return None
    lmk = r.mesh[:, torch.tensor(DLIB68_FROM_MESH, device=r.mesh.device), :2]
    return torch.cat([lmk[..., 0], lmk[..., 1]], dim=1)


def _mesh(r: FaceResults) -> Tensor | None:
    return None if r.mesh is None else torch.cat([r.mesh[..., 0], r.mesh[..., 1], r.mesh[..., 2]], dim=1)


def _gaze(r: FaceResults) -> Tensor | None:
    g = r.gaze
    if g is None:
        return None
    angle = torch.arccos((torch.cos(g[:, 0]) * torch.cos(g[:, 1])).clamp(-1, 1))
    return torch.stack([g[:, 0], g[:, 1], angle], 1)


def _keypoints(r: FaceResults) -> Tensor | None:
    kp = r.landmarks5
    return None if kp is None else torch.cat([kp[..., 0], kp[..., 1]], dim=1)


def _when(flag: Callable[[OutputLayout], bool], cols: tuple[str, ...]) -> Callable[[OutputLayout], tuple[str, ...]]:
    return lambda layout: cols if flag(layout) else ()


FACE_GROUPS: tuple[ColumnGroup, ...] = (
    ColumnGroup("face_rect", lambda _: RECT_COLUMNS, _rect, optional=False),
    ColumnGroup("landmarks", lambda _: LANDMARK_COLUMNS, _landmarks68, optional=False),
    ColumnGroup("pose", _when(lambda l: l.pose, POSE_COLUMNS), lambda r: r.pose),
    ColumnGroup("aus", lambda l: l.au_names, lambda r: r.aus),
    ColumnGroup("emotions", lambda l: l.emotion_names, lambda r: r.emotions),
    ColumnGroup("valence_arousal", _when(lambda l: l.valence_arousal, VALENCE_AROUSAL_COLUMNS), lambda r: r.valence_arousal),
    ColumnGroup("gaze", _when(lambda l: l.gaze, GAZE_COLUMNS), _gaze),
    ColumnGroup("identity", lambda l: tuple(f"Identity_{i + 1}" for i in range(l.identity_dim)), lambda r: r.identity),
    ColumnGroup("mesh", lambda _: MESH_COLUMNS, _mesh, optional=False),
    ColumnGroup("blendshapes", _when(lambda l: l.blendshapes, BLENDSHAPE_NAMES), lambda r: r.blendshapes),
    ColumnGroup(
        "keypoints",
        lambda l: tuple(f"kp_{a}_{i}" for a in "xy" for i in range(l.n_keypoints)),
        _keypoints,
        optional=False,
        extra=True,
    ),
)


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


def _face_block(layout: OutputLayout, results: FaceResults, row_face: np.ndarray, extra: bool) -> np.ndarray:
    """float32[R, C] of every per-face column of the reference (or facecli's own) groups, NaN without a face.

    One device-to-host copy for all groups together.
    """
    groups = layout.groups(extra=extra)
    width = sum(len(cols) for _, cols in groups)
    out = np.full((row_face.shape[0], width), np.nan, dtype=np.float32)
    n = len(results)
    if n == 0 or width == 0:
        return out
    parts = []
    for group, cols in groups:
        values = group.values(results)
        if values is None:
            parts.append(torch.full((n, len(cols)), float("nan"), device=results.boxes.device))
        else:
            if values.shape != (n, len(cols)):
                raise ValueError(f"column group {group.name}: expected [{n}, {len(cols)}], got {list(values.shape)}")
            parts.append(values.detach().float().to(results.boxes.device))
    faces = torch.cat(parts, dim=1).cpu().numpy()
    has = row_face >= 0
    out[has] = faces[row_face[has]]
    return out


def approx_time(frame: int, fps: float) -> str:
    """The reference's MM:SS time of a frame number."""
    seconds = frame / fps if fps > 0 else 0.0
    return f"{int(seconds // 60):02d}:{int(seconds % 60):02d}"


def to_record_batch(
    layout: OutputLayout,
    schema: pa.Schema,
    batch: FrameBatch,
    results: FaceResults,
    identities: list[str | None] | None = None,
    fps: float = 0.0,
) -> pa.RecordBatch:
    """Rows for one frame batch: one per face, and one NaN row for each frame without a face.

    Args:
        layout: the run's column groups.
        schema: ``layout.arrow_schema(...)`` of the run.
        batch: the frames.
        results: per-face measurements for these frames.
        identities: per-face identity labels (same order as ``results``), None for no label
            (the engine labels identities when it writes the final file).
        fps: video frame rate, for the reference's approx_time column.
    """
    row_frame, row_face = _rows(results, len(batch))
    n_rows = row_frame.shape[0]
    numeric = _face_block(layout, results, row_face, extra=False)
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
    labels = [None] * n_rows if identities is None else [identities[f] if f >= 0 else None for f in row_face]
    columns.append(pa.array(labels, type=pa.string()))
    kp = results.landmarks5
    if kp is not None and kp.shape[1] != layout.n_keypoints:
        raise ValueError(f"model set gave {kp.shape[1]} keypoints, layout expects {layout.n_keypoints}")
    extra = _face_block(layout, results, row_face, extra=True)
    columns += [pa.array(col) for col in np.ascontiguousarray(extra.T)]
    if layout.tracks:
        track = np.full(n_rows, -1, dtype=np.int64)
        if results.track is not None and len(results):
            track[~no_face] = results.track.cpu().numpy()[row_face[~no_face]]
        columns.append(pa.array(track, mask=track < 0))
    if layout.video:
        columns.append(pa.array(np.asarray(batch.time_s, dtype=np.float64)[row_frame]))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def read_metadata(schema: pa.Schema) -> dict[str, object]:
    """The facecli metadata stored in an output file's schema ({} when absent)."""
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}
