"""Drawing one frame's faces: geometry of the pose axes and gaze arrows, colours, where pixels change."""

from __future__ import annotations

import numpy as np
import pytest

from facecli.overlay import FrameFaces, OverlayStyle, draw_faces
from facecli.overlay.draw import PALETTE, UNLABELLED, colour_for, gaze_directions, pose_axes
from tests.support.overlay_checks import changed_pixels, near_boxes, outline_hits


def test_pose_axes_follow_the_sign_convention():
    deg30 = np.pi / 6
    c, s = np.cos(deg30), 0.5
    frontal, up, right, left_roll = pose_axes(np.array([[0, 0, 0], [deg30, 0, 0], [0, 0, deg30], [0, deg30, 0]]))
    # rows: head x axis (viewer's right when frontal), up through the top of the head, nose
    assert np.allclose(frontal, [[1, 0], [0, -1], [0, 0]], atol=1e-6)
    assert np.allclose(up, [[1, 0], [0, -c], [0, -s]], atol=1e-6), "+pitch: chin up, nose points up the image"
    assert np.allclose(right, [[c, 0], [0, -1], [-s, 0]], atol=1e-6), "+yaw: to the subject's right = viewer's left"
    assert np.allclose(left_roll, [[c, -s], [-s, -c], [0, 0]], atol=1e-6), "+roll: top of head to the viewer's left"
    # with no roll the nose axis is the gaze direction of the same pitch and yaw
    rng = np.random.default_rng(0)
    angles = rng.uniform(-1.2, 1.2, (50, 2))
    nose = pose_axes(np.stack([angles[:, 0], np.zeros(50), angles[:, 1]], 1))[:, 2]
    assert np.allclose(nose, gaze_directions(angles), atol=1e-6)


def test_gaze_directions_hand_worked():
    got = gaze_directions(np.array([[0.0, 0.0], [np.pi / 2, 0.0], [0.0, np.pi / 2], [-np.pi / 6, -np.pi / 6]]))
    want = [[0, 0], [0, -1], [-1, 0], [np.cos(np.pi / 6) * 0.5, 0.5]]
    assert np.allclose(got, want, atol=1e-6)


def test_colours_are_stable_per_label():
    persons = [colour_for(f"Person_{k}") for k in range(len(PALETTE))]
    assert len(set(persons)) == len(PALETTE), "the first identities never share a colour"
    assert colour_for("track 3") == colour_for("Person_3") and colour_for("") == UNLABELLED
    assert colour_for("alice") == colour_for("alice") in PALETTE


def _face(x1, y1, size, n_mesh=0):
    lmk = np.stack([np.linspace(x1 + 5, x1 + size - 5, 68), np.linspace(y1 + 5, y1 + size - 5, 68)], 1)
    mesh = np.stack([np.full(n_mesh, x1 + size / 2), np.linspace(y1 + 2, y1 + size - 2, n_mesh)], 1) if n_mesh else None
    return np.array([x1, y1, x1 + size, y1 + size], np.float32), lmk.astype(np.float32), mesh


def _faces(specs, **groups) -> FrameFaces:
    boxes, lmks, meshes = zip(*specs)
    n = len(boxes)
    return FrameFaces(
        boxes=np.stack(boxes), labels=tuple(f"Person_{i}" for i in range(n)),
        colour_keys=tuple(f"Person_{i}" for i in range(n)), landmarks=np.stack(lmks),
        mesh=np.stack(meshes) if meshes[0] is not None else None, **groups,
    )


def test_draw_faces_stays_near_each_face_and_draws_every_group():
    image = np.full((300, 400, 3), 96, dtype=np.uint8)
    specs = [_face(40, 50, 60), _face(260, 150, 80)]
    aus = np.array([[0.9, 0.1, 0.5, np.nan], [0.2, 0.8, 0.4, 0.6]], np.float32)
    full = _faces(
        specs, pose=np.array([[0.3, 0.1, -0.4], [0, 0, 0]], np.float32),
        gaze=np.array([[0.2, 0.5], [-0.3, 0.1]], np.float32),
        emotions=np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], np.float32), emotion_names=("Neutral", "Happy", "Sad"),
        aus=aus, au_names=("AU01", "AU02", "AU04", "AU12"),
    )
    before = image.copy()
    out = draw_faces(image, full)
    assert np.array_equal(image, before), "the input image is not modified"
    changed = changed_pixels(image, out)
    assert not changed[~near_boxes(image.shape, full.boxes)].any()
    for box in full.boxes:
        assert outline_hits(changed, box) > 0.9
    # each optional group adds pixels of its own
    bare = _faces(specs)
    base = changed_pixels(image, draw_faces(image, bare))
    for extra in ("pose", "gaze", "emotions", "aus"):
        names = {"emotions": "emotion_names", "aus": "au_names"}
        more = {extra: getattr(full, extra)}
        if extra in names:
            more[names[extra]] = getattr(full, names[extra])
        with_group = changed_pixels(image, draw_faces(image, _faces(specs, **more)))
        assert (with_group & ~base).sum() > 20, extra
    strip = np.zeros_like(changed)
    strip[111:170, 40:150] = True  # below the first box
    assert (changed & strip).sum() > (base & strip).sum() + 100, "AU bars under the box"
    # the mesh replaces the 68 landmarks
    meshed = _faces([_face(40, 50, 60, n_mesh=478), _face(260, 150, 80, n_mesh=478)])
    drawn = draw_faces(image, meshed)
    assert (np.abs(drawn[55:106, 70].astype(int) - 96) > 40).any(axis=1).mean() > 0.8, "mesh column drawn"


def test_nothing_drawn_without_faces():
    image = np.full((64, 64, 3), 50, dtype=np.uint8)
    empty = FrameFaces(boxes=np.zeros((0, 4), np.float32), labels=(), colour_keys=())
    assert draw_faces(image, empty) is image
    nan_box = FrameFaces(boxes=np.full((1, 4), np.nan, np.float32), labels=("",), colour_keys=("",))
    assert np.array_equal(draw_faces(image, nan_box), image)
    with pytest.raises(ValueError):
        draw_faces(image[..., 0], empty)


def test_style_sizes_scale_with_the_frame():
    assert OverlayStyle().sizes(720, 1280) == (2, 14)
    assert OverlayStyle().sizes(176, 320) == (1, 9)
    assert OverlayStyle(line_width=4, font_size=20).sizes(176, 320) == (4, 20)
