"""A py-feat 2.1.5 view of facecli outputs, for analysis scripts written against py-feat's ``Fex``.

facecli's columns are py-feat Detectorv2's, in the same order, with two differences:

* signs: ``Pitch`` and ``gaze_pitch`` are the opposite of what py-feat 2.1.5 writes for the same
  face (:data:`facecli.schema.PYFEAT_NEGATED`; the parity tests check this against py-feat);
* facecli's own columns after ``Identity``: detector keypoints ``kp_*``, ``track`` and ``time_s``.

:func:`to_pyfeat` undoes both, so the view holds what py-feat 2.1.5 would have written (within
the parity tests' tolerance, for feat-v2). :func:`fex_columns` names the column groups the way
py-feat's ``Fex`` wants them, and :func:`to_fex` builds a ``Fex`` where py-feat is installed.
Without py-feat in the same environment, save the view as CSV and load it there with
``feat.utils.io.read_feat``.
"""

from __future__ import annotations

from typing import Any

from facecli import columns as C
from facecli.schema import PYFEAT_NEGATED

VIEW_ATTR = "facecli_view"


def to_pyfeat(df, *, extra: bool = False):
    """py-feat 2.1.5's columns and signs, from a facecli DataFrame (e.g. ``facecli.read(...)``).

    Args:
        df: facecli rows (any subset of columns).
        extra: keep facecli's own columns (``kp_*``, ``track``, ``time_s``) at the end.

    Returns:
        A new DataFrame: ``Pitch`` and ``gaze_pitch`` negated, facecli's own columns dropped
        (unless ``extra``), ``attrs`` kept with ``attrs["facecli_view"] = "pyfeat-2.1.5"``.

    Raises:
        ValueError: ``df`` already is a py-feat view (negating twice would undo it).
    """
    if df.attrs.get(VIEW_ATTR):
        raise ValueError(f"this DataFrame already is a {df.attrs[VIEW_ATTR]} view")
    keep = [c for c in df.columns if extra or c not in set(C.FACECLI_ONLY)]
    out = df[keep].copy()
    for col in PYFEAT_NEGATED:
        if col in out.columns:
            out[col] = -out[col]
    out.attrs = {**df.attrs, VIEW_ATTR: "pyfeat-2.1.5"}
    return out


def fex_columns(df) -> dict[str, Any]:
    """Keyword arguments that make ``feat.Fex(view, **fex_columns(view))`` know its column groups,
    as py-feat 2.1.5's ``read_feat`` sets them for a Detectorv2 file (groups the table lacks are None)."""

    def have(names) -> list[str] | None:
        found = C.present(df, names)
        return found or None

    return {
        "au_columns": C.present(df, C.AUS),
        "emotion_columns": C.present(df, C.EMOTIONS),
        "facebox_columns": list(C.FACEBOX),
        "landmark_columns": list(C.LANDMARKS),
        "facepose_columns": list(C.POSE),
        "gaze_columns": have(C.GAZE),
        "identity_columns": have(C.IDENTITY),
        "blendshape_columns": have(C.BLENDSHAPES),
        "time_columns": ["frame"],
        "detector": "Detectorv2",
    }


def to_fex(df):
    """A py-feat ``Fex`` of the view of ``df`` (needs py-feat 2.1.5 in this environment).

    Raises:
        ImportError: py-feat is not installed here (save ``to_pyfeat(df)`` as CSV and read it with
            ``feat.utils.io.read_feat`` where it is).
    """
    try:
        from feat import Fex
    except ImportError as exc:
        raise ImportError(
            "py-feat is not installed here; save facecli.to_pyfeat(df) with .to_csv(path, index=False) "
            "and load it with feat.utils.io.read_feat(path) where py-feat is installed"
        ) from exc
    view = df if df.attrs.get(VIEW_ATTR) else to_pyfeat(df)
    return Fex(view, **fex_columns(view))
