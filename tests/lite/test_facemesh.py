"""Face mesh (468) + iris (478) on a real face with the packaged lite weights, and ROI geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

skimage_data = pytest.importorskip("skimage.data")
skimage_transform = pytest.importorskip("skimage.transform")

from facecli.models.lite.facemesh import FaceMeshNet, load_facemesh  # noqa: E402
from facecli.models.lite.iris import IrisNet, load_iris, refine_with_iris  # noqa: E402
from facecli.ops.roi import crop_to_frame, detection_roi, roi_affine, segment_roi, warp_crops  # noqa: E402

# Hand-checked detection of the astronaut's face (512x512): box around forehead-to-chin,
# BlazeFace keypoints right eye, left eye, nose tip, mouth, right tragion, left tragion.
BOX = torch.tensor([[178.0, 83.0, 273.0, 178.0]])
KEYPOINTS = torch.tensor(
    [[[201.5, 105.0], [246.0, 109.0], [220.5, 127.0], [220.0, 148.5], [178.0, 115.5], [272.0, 124.0]]]
)


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    return torch.from_numpy(skimage_data.astronaut()).permute(2, 0, 1).contiguous()  # [3, 512, 512]


@pytest.fixture(scope="module")
def mesh_model():
    torch.manual_seed(0)
    return load_facemesh()


@pytest.fixture(scope="module")
def iris_net() -> IrisNet:
    return load_iris()


@pytest.fixture(scope="module")
def astronaut_mesh(astronaut, mesh_model, iris_net):
    mesh, presence = mesh_model.run(astronaut[None], torch.zeros(1, dtype=torch.long), KEYPOINTS, BOX)
    mesh478 = refine_with_iris(astronaut[None], torch.zeros(1, dtype=torch.long), mesh, iris_net)
    return mesh[0], presence[0], mesh478[0]


# ----------------------------------------------------------------------------- geometry
def test_roi_affine_corners_hand_table() -> None:
    roi = torch.tensor([[100.0, 50.0, 20.0, 0.0], [100.0, 50.0, 20.0, math.pi / 2], [100.0, 50.0, 20.0, 0.0]])
    affine = roi_affine(roi, 64, mirror=torch.tensor([False, False, True]))
    corners = torch.tensor([[0.0, 0.0], [64.0, 64.0], [32.0, 32.0]]).expand(3, 3, 2)
    got = crop_to_frame(corners, affine)
    expected = torch.tensor(
        [
            [[90.0, 40.0], [110.0, 60.0], [100.0, 50.0]],  # upright
            [[110.0, 40.0], [90.0, 60.0], [100.0, 50.0]],  # crop x axis points down the frame
            [[110.0, 40.0], [90.0, 60.0], [100.0, 50.0]],  # mirrored: u -> 64 - u
        ]
    )
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_detection_and_segment_roi_rules() -> None:
    # eye line tilted by +30 degrees (right-hand end lower): angle +30 deg, side 1.5 * long box side
    kp = torch.tensor([[[0.0, 0.0], [math.cos(math.pi / 6), math.sin(math.pi / 6)]]]) * 40 + 100
    roi = detection_roi(torch.tensor([[80.0, 90.0, 160.0, 130.0]]), kp)
    torch.testing.assert_close(roi, torch.tensor([[120.0, 110.0, 120.0, math.pi / 6]]))
    eye = segment_roi(torch.tensor([[10.0, 20.0]]), torch.tensor([[30.0, 25.0]]), 2.3)
    torch.testing.assert_close(eye, torch.tensor([[20.0, 22.5, 46.0, math.atan2(5.0, 20.0)]]))


def test_warp_crops_matches_per_face_loop() -> None:
    gen = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (3, 3, 40, 56), generator=gen, dtype=torch.uint8)
    frame_idx = torch.tensor([2, 0, 2, 2, 1])
    roi = torch.tensor([[20.0, 18, 16, 0.3], [30, 20, 50, -1.0], [5, 5, 12, 2.0], [50, 35, 20, 0.0], [28, 20, 30, 0.7]])
    mirror = torch.tensor([False, True, False, True, False])
    affine = roi_affine(roi, 8, mirror)
    got = warp_crops(frames, frame_idx, affine, 8)
    for n in range(5):  # plain loop: one grid_sample per face, bilinear, edge pixels replicated
        v, u = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
        xy = crop_to_frame(torch.stack([u, v], -1).reshape(1, -1, 2), affine[n : n + 1])[0]
        grid = (xy / torch.tensor([55.0, 39.0]) * 2 - 1).reshape(1, 8, 8, 2)
        one = F.grid_sample(frames[frame_idx[n], None].float(), grid, padding_mode="border", align_corners=True)
        torch.testing.assert_close(got[n], one[0] / 255, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- real face
def test_mesh_lies_on_the_face(astronaut_mesh) -> None:
    mesh, presence, _ = astronaut_mesh
    assert mesh.shape == (468, 3) and mesh.dtype == torch.float32
    assert presence > 0.5
    nose, right_eye_outer, left_eye_outer = mesh[1], mesh[33], mesh[263]
    assert right_eye_outer[0] < nose[0] < left_eye_outer[0]
    assert right_eye_outer[1] < nose[1] and left_eye_outer[1] < nose[1]
    for lip in (13, 14, 0, 17):  # upper/lower inner lip, upper/lower outer lip
        assert mesh[lip, 1] > nose[1]
    assert mesh[152, 1] > mesh[17, 1]  # chin below the lower lip
    # the whole mesh inside a generous face box, inter-ocular distance plausible
    assert (mesh[:, 0] > 150).all() and (mesh[:, 0] < 300).all()
    assert (mesh[:, 1] > 40).all() and (mesh[:, 1] < 200).all()
    assert 45 < float((mesh[33, :2] - mesh[263, :2]).norm()) < 80
    assert mesh[1, 2] < mesh[234, 2]  # nose tip nearer to the camera than the cheek edge


def test_iris_between_eye_corners(astronaut_mesh) -> None:
    mesh, _, mesh478 = astronaut_mesh
    assert mesh478.shape == (478, 3)
    torch.testing.assert_close(mesh478[:468], mesh)
    for centre, (a, b) in ((468, (33, 133)), (473, (362, 263))):
        c = mesh478[centre]
        assert mesh478[a, 0] < c[0] < mesh478[b, 0]
        assert abs(float(c[1] - (mesh478[a, 1] + mesh478[b, 1]) / 2)) < 6
        edge = mesh478[centre + 1 : centre + 5, :2]
        radius = (edge - c[:2]).norm(dim=-1)
        assert ((radius > 2) & (radius < 8)).all()
        # image-space order: right, up, left, down of the centre
        assert edge[0, 0] > c[0] and edge[1, 1] < c[1] and edge[2, 0] < c[0] and edge[3, 1] > c[1]


def test_batched_equals_single(astronaut, mesh_model, iris_net) -> None:
    shifted = torch.roll(astronaut, shifts=(30, -40), dims=(1, 2))
    frames = torch.stack([astronaut, shifted, astronaut])
    frame_idx = torch.tensor([0, 1, 2, 2])
    shift = torch.tensor([-40.0, 30.0])
    keypoints = torch.cat([KEYPOINTS, KEYPOINTS + shift, KEYPOINTS, KEYPOINTS + 3.0])
    boxes = torch.cat([BOX, BOX + shift.repeat(2), BOX, BOX + 3.0])
    mesh, presence = mesh_model.run(frames, frame_idx, keypoints, boxes)
    mesh478 = refine_with_iris(frames, frame_idx, mesh, iris_net)
    for n in range(4):
        one, one_presence = mesh_model.run(frames[frame_idx[n], None], torch.zeros(1, dtype=torch.long),
                                           keypoints[n : n + 1], boxes[n : n + 1])
        one478 = refine_with_iris(frames[frame_idx[n], None], torch.zeros(1, dtype=torch.long), one, iris_net)
        torch.testing.assert_close(mesh478[n], one478[0], atol=1e-3, rtol=0)
        torch.testing.assert_close(presence[n], one_presence[0], atol=1e-5, rtol=0)
    # the shifted copy gives the same mesh moved by the shift
    torch.testing.assert_close(mesh478[1, :, :2], mesh478[0, :, :2] + shift, atol=1e-2, rtol=0)
    assert not torch.allclose(mesh478[3], mesh478[2])  # a different ROI is a different crop


def test_rotated_face_gives_rotated_mesh(astronaut, astronaut_mesh, mesh_model, iris_net) -> None:
    _, _, mesh478 = astronaut_mesh
    theta = math.radians(20.0)
    centre = np.array([225.0, 130.0])
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    matrix = np.eye(3)
    matrix[:2, :2], matrix[:2, 2] = rot, centre - rot @ centre  # input (x, y) -> output (x, y)
    transform = skimage_transform.AffineTransform(matrix=matrix)
    image = skimage_data.astronaut().astype(np.float64)
    rotated = skimage_transform.warp(image, transform.inverse, order=1, mode="edge", preserve_range=True)
    frames = torch.from_numpy(np.round(rotated).astype(np.uint8)).permute(2, 0, 1)[None]

    def move(points: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(transform(points.reshape(-1, 2).double().numpy())).float().reshape(points.shape)

    box_centre = move((BOX[:, :2] + BOX[:, 2:]) / 2)
    half = (BOX[:, 2:] - BOX[:, :2]) / 2
    mesh, presence = mesh_model.run(frames, torch.zeros(1, dtype=torch.long), move(KEYPOINTS),
                                    torch.cat([box_centre - half, box_centre + half], dim=1))
    got478 = refine_with_iris(frames, torch.zeros(1, dtype=torch.long), mesh, iris_net)[0]
    expected_xy = move(mesh478[:, :2])
    dist = (got478[:, :2] - expected_xy).norm(dim=-1)
    assert presence[0] > 0.5
    # observed: mean 0.10 px, max 0.25 px (mesh), 0.23 px (iris); resampling twice costs a little
    assert float(dist[:468].mean()) < 0.5 and float(dist[:468].max()) < 1.5
    assert float(dist[468:].max()) < 1.0
    assert float((got478[:468, 2] - mesh478[:468, 2]).abs().mean()) < 0.5  # depth unchanged
    eye_line = got478[263, :2] - got478[33, :2]
    original = mesh478[263, :2] - mesh478[33, :2]
    turned = math.atan2(eye_line[1], eye_line[0]) - math.atan2(original[1], original[0])
    assert abs(math.degrees(turned) - 20.0) < 1.5


def test_empty_batch(astronaut, mesh_model, iris_net) -> None:
    mesh, presence = mesh_model.run(astronaut[None], torch.zeros(0, dtype=torch.long),
                                    torch.zeros(0, 6, 2), torch.zeros(0, 4))
    assert mesh.shape == (0, 468, 3) and presence.shape == (0,)
    mesh478 = refine_with_iris(astronaut[None], torch.zeros(0, dtype=torch.long), mesh, iris_net)
    assert mesh478.shape == (0, 478, 3)


def test_random_weight_shapes() -> None:
    torch.manual_seed(0)
    points, logit = FaceMeshNet()(torch.rand(2, 3, 192, 192))
    assert points.shape == (2, 468, 3) and logit.shape == (2,)
    net, crops = IrisNet().eval(), torch.rand(3, 3, 64, 64)
    contour, iris = net(crops)
    assert contour.shape == (3, 71, 3) and iris.shape == (3, 5, 3)
    skipped, alone = net(crops, contour=False)  # the iris head alone: the same iris, no contour
    assert skipped is None and torch.equal(alone, iris)


def test_packaged_weights_name_their_source() -> None:
    import hashlib

    from facecli.models.weights import packaged_lite_file as weights_path
    from facecli.models.weights import read_safetensors

    from tests.paths import LITE_SOURCES as sources  # the originals, where this machine has them
    for name, source in (("facemesh.safetensors", "face_landmark.tflite"),
                         ("iris.safetensors", "iris_landmark.tflite")):
        _, meta = read_safetensors(str(weights_path(name)))
        assert meta["source"] == source and len(meta["source_sha256"]) == 64
        if (sources / source).is_file():
            assert meta["source_sha256"] == hashlib.sha256((sources / source).read_bytes()).hexdigest()
