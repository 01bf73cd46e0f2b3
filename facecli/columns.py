"""Column names of facecli outputs, as lists, so analyses never rebuild them by hand.

Every list is derived from :mod:`facecli.schema` (the module that owns the output schema) applied
to the widest output any model set writes (feat-v2 video with tracks; the lite set's 6 detector
keypoints). A file holds a subset: groups its model set cannot produce are left out (the lite set
has no AUs, valence/arousal, gaze or blendshapes, and 128 identity dimensions, not 512).
:func:`present` keeps the names a table actually has::

    import facecli
    df = facecli.read("out/")
    aus = df[facecli.columns.present(df, facecli.columns.AUS)]

Lists (tuples of str, in file order):

FACEBOX: FaceRectX FaceRectY FaceRectWidth FaceRectHeight FaceScore.
LANDMARKS: x_0..x_67 then y_0..y_67 (LANDMARKS_X, LANDMARKS_Y: each half).
POSE: Pitch Roll Yaw X Y Z.
AUS: AU01 ... AU43 (feat-v2's 20 action units).
EMOTIONS: Neutral Happy Sad Surprise Fear Disgust Anger.
VALENCE_AROUSAL: valence arousal.
GAZE: gaze_pitch gaze_yaw gaze_angle.
IDENTITY: the embedding, Identity_1..Identity_512 (lite files stop at Identity_128).
MESH: mesh_x_0..477, mesh_y_0..477, mesh_z_0..477 (MESH_X, MESH_Y, MESH_Z: each third).
BLENDSHAPES: _neutral browDownLeft ... noseSneerRight (52).
KEYPOINTS: kp_x_0..kp_x_5 then kp_y_0..kp_y_5 (feat-v2 files have 5 per axis, lite 6).
FRAME: FrameHeight FrameWidth input frame approx_time time_s (approx_time, time_s: video only).
LABELS: Identity (the person label) and track (video only).
ALL: every column of the widest output, in file order.
FACECLI_ONLY: columns py-feat's Detectorv2 does not write (kp_*, track, time_s).
GROUPS: {group name in the schema: its columns}.
"""

from __future__ import annotations

from collections.abc import Iterable

from facecli.models.lite.blazeface import NUM_KEYPOINTS as _LITE_KEYPOINTS
from facecli.models.multitask.config import AU_NAMES_20, EMOTION_NAMES_7
from facecli.schema import N_MESH, OutputLayout

_WIDEST = OutputLayout(
    model_set="any",
    video=True,
    au_names=AU_NAMES_20,
    emotion_names=EMOTION_NAMES_7,
    valence_arousal=True,
    gaze=True,
    pose=True,
    identity_dim=512,
    blendshapes=True,
    n_keypoints=max(5, _LITE_KEYPOINTS),
    tracks=True,
)

GROUPS: dict[str, tuple[str, ...]] = {group.name: cols for group, cols in _WIDEST.groups()}
ALL: tuple[str, ...] = tuple(_WIDEST.arrow_schema().names)

FACEBOX = GROUPS["face_rect"]
LANDMARKS = GROUPS["landmarks"]
LANDMARKS_X, LANDMARKS_Y = LANDMARKS[:68], LANDMARKS[68:]
POSE = GROUPS["pose"]
AUS = GROUPS["aus"]
EMOTIONS = GROUPS["emotions"]
VALENCE_AROUSAL = GROUPS["valence_arousal"]
GAZE = GROUPS["gaze"]
IDENTITY = GROUPS["identity"]
MESH = GROUPS["mesh"]
MESH_X, MESH_Y, MESH_Z = MESH[:N_MESH], MESH[N_MESH : 2 * N_MESH], MESH[2 * N_MESH :]
BLENDSHAPES = GROUPS["blendshapes"]
KEYPOINTS = GROUPS["keypoints"]
LABELS = ("Identity", "track")
FACECLI_ONLY = tuple(c for c in ALL if c not in set(_WIDEST.reference_names()))
FRAME = tuple(c for c in ALL if c not in {c for cols in GROUPS.values() for c in cols} and c not in LABELS)


def present(table: Iterable[str] | object, names: Iterable[str]) -> list[str]:
    """The ``names`` that ``table`` has, in the order of ``names``.

    Args:
        table: a DataFrame (its columns), a pyarrow Table or schema (their names), or column names.
        names: one of this module's lists (or any names).
    """
    if hasattr(table, "column_names"):
        have = set(table.column_names)
    elif hasattr(table, "names") and not hasattr(table, "columns"):
        have = set(table.names)
    elif hasattr(table, "columns"):
        have = set(table.columns)
    else:
        have = set(table)  # type: ignore[arg-type]
    return [c for c in names if c in have]
