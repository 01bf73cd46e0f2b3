"""Reference side of the py-feat view test: facecli's py-feat view, saved as CSV, loaded into py-feat 2.1.5.

Usage: ref_fex_view.py VIEW.csv FEX_KWARGS.json OUT.json
Loads the CSV twice, with ``Fex(df, **kwargs)`` (facecli.pyfeat.fex_columns) and with py-feat's own
``read_feat``, and writes what the accessors return (columns and values) for the test to compare.
"""

import json
import sys

import numpy as np
import pandas as pd
from feat import Fex
from feat.utils.io import read_feat


def accessors(fex) -> dict:
    out = {"type": type(fex).__name__}
    for name in ("aus", "emotions", "poses", "faceboxes", "landmarks", "identity_embeddings", "gazes", "blendshapes"):
        try:
            part = getattr(fex, name)
        except (AttributeError, KeyError, TypeError) as exc:
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        out[name] = {"columns": [str(c) for c in part.columns], "values": part.to_numpy(dtype=np.float64).tolist()}
    x, y = fex.landmarks_dlib68_xy()
    out["dlib68_x"], out["dlib68_y"] = x.tolist(), y.tolist()
    out["identities"] = [None if pd.isna(v) else str(v) for v in fex.identities]
    out["inputs"] = [str(v) for v in fex.inputs]
    out["time"] = fex.time.to_numpy().tolist()
    faces = fex[fex["FaceScore"] > 0]
    out["top_emotion"] = [str(v) for v in faces.emotions.idxmax(axis=1)] if len(fex.emotion_columns) else []
    return out


view_csv, kwargs_json, out_json = sys.argv[1:4]
kwargs = json.loads(open(kwargs_json).read())
frame = pd.read_csv(view_csv)
result = {"Fex": accessors(Fex(frame, **kwargs)), "read_feat": accessors(read_feat(view_csv))}
with open(out_json, "w") as fh:
    json.dump(result, fh)
print(len(frame))
