"""The output schema: reference column order, NaN rows for empty frames, conventions."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from facecli.schema import DLIB68_FROM_MESH, OutputLayout, read_metadata, to_record_batch
from facecli.types import FaceResults, FrameBatch

REFERENCE_COLUMNS = (Path(__file__).parent / "data" / "columns-detectorv2.txt").read_text().split()
AUS = tuple(c for c in REFERENCE_COLUMNS if c.startswith("AU"))
EMOTIONS = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger")


def featv2_layout(video: bool = False) -> OutputLayout:
    return OutputLayout(
        model_set="feat-v2", video=video, au_names=AUS, emotion_names=EMOTIONS, valence_arousal=True,
        gaze=True, identity_dim=512, blendshapes=True,
    )


def test_featv2_image_columns_are_the_reference_order_then_ours():
    names = featv2_layout().arrow_schema().names
    assert names[: len(REFERENCE_COLUMNS)] == REFERENCE_COLUMNS
    assert names[len(REFERENCE_COLUMNS):] == [f"kp_x_{i}" for i in range(5)] + [f"kp_y_{i}" for i in range(5)]


def test_video_adds_approx_time_before_identity_and_time_s_last():
    names = featv2_layout(video=True).arrow_schema().names
    assert names[names.index("frame") + 1: names.index("frame") + 3] == ["approx_time", "Identity"]
    assert names[-1] == "time_s"


def test_lite_layout_leaves_groups_out():
    layout = OutputLayout(model_set="lite", video=False, emotion_names=EMOTIONS, identity_dim=128, n_keypoints=6)
    names = layout.arrow_schema().names
    assert "AU01" not in names and "valence" not in names and "gaze_pitch" not in names
    assert "_neutral" not in names and "Identity_128" in names and "Identity_129" not in names
    assert "Pitch" in names and "kp_y_5" in names


def _results(n_frames_with_faces: list[int]) -> FaceResults:
    frame = torch.tensor([f for f, n in enumerate(n_frames_with_faces) for _ in range(n)], dtype=torch.long)
    n = frame.numel()
    g = torch.Generator().manual_seed(1)
    return FaceResults(
        frame=frame,
        boxes=torch.tensor([[10.0, 20.0, 50.0, 60.0]]).repeat(n, 1) + torch.arange(n)[:, None],
        scores=torch.linspace(0.6, 0.9, n),
        landmarks5=torch.rand(n, 5, 2, generator=g),
        mesh=torch.rand(n, 478, 3, generator=g),
        pose=torch.rand(n, 6, generator=g),
        aus=torch.rand(n, 20, generator=g),
        emotions=torch.softmax(torch.rand(n, 7, generator=g), 1),
        valence_arousal=torch.rand(n, 2, generator=g),
        gaze=torch.tensor([[0.3, -0.4]]).repeat(n, 1),
        identity=torch.rand(n, 512, generator=g),
        blendshapes=torch.rand(n, 52, generator=g),
    )


def test_rows_per_face_and_nan_row_for_empty_frame():
    layout = featv2_layout(video=True)
    schema = layout.arrow_schema({"model_set": "feat-v2"})
    batch = FrameBatch(torch.zeros(3, 3, 48, 64, dtype=torch.uint8), (10, 11, 12), (0.4, 0.44, 0.48), ("clip.mp4",) * 3)
    res = _results([2, 0, 1])
    rb = to_record_batch(layout, schema, batch, res, ["Person_0", "Person_1", "Person_0"], fps=25.0)
    table = pa.Table.from_batches([rb]).to_pandas()
    assert list(table["frame"]) == [10, 10, 11, 12]
    assert list(table["FaceScore"].round(4)) == pytest.approx([0.6, 0.75, 0.0, 0.9])
    empty = table.iloc[2]
    assert np.isnan(empty["FaceRectX"]) and np.isnan(empty["AU01"]) and np.isnan(empty["mesh_x_0"])
    assert pd.isna(empty["Identity"]) and empty["FrameHeight"] == 48 and empty["input"] == "clip.mp4"
    assert list(table["Identity"].fillna("-")) == ["Person_0", "Person_1", "-", "Person_0"]
    # rect is x, y, w, h of the box
    assert table.loc[0, ["FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight"]].tolist() == [10, 20, 40, 40]
    # 68 landmarks are the dlib subset of the mesh
    face = res.mesh[0]
    assert table.loc[0, "x_3"] == pytest.approx(face[DLIB68_FROM_MESH[3], 0].item())
    assert table.loc[0, "y_67"] == pytest.approx(face[DLIB68_FROM_MESH[67], 1].item())
    assert table.loc[0, "mesh_z_477"] == pytest.approx(face[477, 2].item())
    # gaze columns: pitch, yaw, angle = arccos(cos p cos y)
    assert table.loc[0, "gaze_pitch"] == pytest.approx(0.3)
    assert table.loc[0, "gaze_yaw"] == pytest.approx(-0.4)
    assert table.loc[0, "gaze_angle"] == pytest.approx(np.arccos(np.cos(0.3) * np.cos(-0.4)), abs=1e-6)
    assert list(table["approx_time"]) == ["00:00"] * 4
    assert table.loc[3, "time_s"] == pytest.approx(0.48)
    assert table.loc[1, "kp_x_2"] == pytest.approx(res.landmarks5[1, 2, 0].item())
    assert read_metadata(rb.schema)["model_set"] == "feat-v2"


def test_frame_without_any_face_in_batch():
    layout = featv2_layout()
    schema = layout.arrow_schema()
    batch = FrameBatch(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), (0,), (0.0,), ("a.png",))
    res = FaceResults(frame=torch.zeros(0, dtype=torch.long), boxes=torch.zeros(0, 4), scores=torch.zeros(0))
    rb = to_record_batch(layout, schema, batch, res, [])
    assert rb.num_rows == 1 and rb.column("FaceScore")[0].as_py() == 0.0
