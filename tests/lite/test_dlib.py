"""dlib ResNet face embedding and five-point alignment: real weights on real faces."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torchvision.transforms.functional as TF

from facecli.models.lite.dlib_resnet import DlibResNet, load_dlib_resnet, padded_add
from facecli.ops.align import (
    dlib_chip_affine,
    dlib_template,
    pyramid_levels,
    similarity_transform,
    warp_chips,
)

skimage_data = pytest.importorskip("skimage.data")
from tests.paths import LITE_SOURCES as SOURCES
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

# Hand-placed five points (x, y) in dlib's template order: left eye outer, left eye inner,
# right eye outer, right eye inner, nose bottom (the subject's left is on the image's right).
# Checked on zoomed, gridded plots of each image.
ASTRONAUT_5 = ((258, 102), (237, 104), (192, 101), (212, 102), (225, 130))
# The cameraman is seen from his right side; his left eye is hidden behind the nose bridge.
CAMERA_5 = ((258, 146), (254, 147), (229, 147), (249, 147), (246, 170))


@pytest.fixture(scope="module")
def embedder():
    return load_dlib_resnet()


def _astronaut() -> torch.Tensor:
    return torch.from_numpy(skimage_data.astronaut()).permute(2, 0, 1).contiguous()


def _views() -> tuple[torch.Tensor, torch.Tensor]:
    """Four frames (astronaut, its mirror, a rotated + scaled + shifted copy, camera) and points."""
    astronaut = _astronaut()
    points = torch.tensor(ASTRONAUT_5, dtype=torch.float32)
    mirrored = points.clone()
    mirrored[:, 0] = astronaut.shape[-1] - 1 - mirrored[:, 0]
    mirrored = mirrored[[2, 3, 0, 1, 4]]  # the subject's left and right swap
    angle, scale, shift = 8.0, 0.7, (30.0, -20.0)
    moved_frame = TF.affine(astronaut, angle=angle, translate=list(shift), scale=scale, shear=[0.0],
                            interpolation=TF.InterpolationMode.BILINEAR)  # fmt: skip
    theta = math.radians(angle)  # torchvision turns the picture counter-clockwise about its centre
    rot = scale * torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    centre = torch.tensor([256.0, 256.0])
    moved = (points - centre) @ rot.T + centre + torch.tensor(shift)
    camera = torch.from_numpy(skimage_data.camera())[None].expand(3, -1, -1)
    frames = torch.stack([astronaut, astronaut.flip(-1), moved_frame, camera])
    pts = torch.stack([points, mirrored, moved, torch.tensor(CAMERA_5, dtype=torch.float32)])
    return frames, pts


def test_same_person_closer_than_different_person(embedder):
    frames, points = _views()
    emb = embedder.embed(frames, torch.arange(4), points)
    assert emb.shape == (4, 128) and torch.isfinite(emb).all()
    dist = torch.cdist(emb, emb)
    same = [float(dist[0, 1]), float(dist[0, 2]), float(dist[1, 2])]
    different = [float(dist[3, i]) for i in range(3)]
    assert max(same) < 0.3, same  # dlib: same person about 0.1-0.25
    assert min(different) > 0.6, different  # dlib's threshold
    assert max(same) < min(different)


def test_chips_are_aligned_on_the_template(embedder):
    frames, points = _views()
    chips = embedder.chips(frames[:3], torch.arange(3), points[:3])
    # The three views of the same face give nearly the same chip.
    assert (chips[0] - chips[2]).abs().mean() < 20
    assert (chips[0] - chips[1].flip(-1)).abs().mean() < 20
    # Mapping the detected points back into chip pixels lands on the template.
    affine = dlib_chip_affine(points[:3])
    inverse = torch.linalg.inv(torch.cat([affine, torch.tensor([[[0.0, 0.0, 1.0]]]).expand(3, 1, 3)], 1))
    back = torch.einsum("nij,npj->npi", inverse[:, :2], torch.cat([points[:3], torch.ones(3, 5, 1)], -1))
    residual = (back - dlib_template()).norm(dim=-1)  # chip pixels, 150 px chip
    assert residual.mean() < 4 and residual.max() < 8  # hand-placed points vs dlib's mean face


def test_batch_matches_single_faces(embedder):
    frames, points = _views()
    frame_idx = torch.tensor([0, 0, 3])
    pts = torch.stack([points[0], points[0] + torch.tensor([3.0, -2.0]), points[3]])
    batched = embedder.embed(frames, frame_idx, pts)
    for i in range(3):
        single = embedder.embed(frames[frame_idx[i]][None], torch.tensor([0]), pts[i : i + 1])
        torch.testing.assert_close(batched[i : i + 1], single, atol=1e-4, rtol=0)


def test_large_face_goes_through_the_pyramid(embedder):
    astronaut = _astronaut()
    big = torch.nn.functional.interpolate(astronaut[None].float(), scale_factor=2.5, mode="bilinear")
    big = big.round().clamp(0, 255).byte()
    points = torch.tensor(ASTRONAUT_5, dtype=torch.float32)[None]
    assert int(pyramid_levels(dlib_chip_affine(points * 2.5), 150)) == 1
    small = embedder.embed(astronaut[None], torch.tensor([0]), points)
    large = embedder.embed(big, torch.tensor([0]), points * 2.5 + 0.75)  # align_corners=False shift
    assert float((small - large).norm()) < 0.15


def test_no_faces(embedder):
    assert embedder.embed(_astronaut()[None], torch.zeros(0, dtype=torch.long), torch.zeros(0, 5, 2)).shape == (0, 128)


def test_similarity_transform_recovers_a_known_one_and_matches_lstsq():
    src = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 20.0], [7.0, 3.0], [4.0, 9.0]])
    angle, scale, shift = 0.3, 1.7, torch.tensor([5.0, -2.0])
    rot = scale * torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    gen = torch.Generator().manual_seed(0)
    dst = torch.stack([src @ rot.T + shift, src @ rot.T + shift + torch.randn(5, 2, generator=gen)])
    affine = similarity_transform(src, dst)
    torch.testing.assert_close(affine[0], torch.cat([rot, shift[:, None]], 1), atol=1e-5, rtol=0)
    # Noisy case: the plain least-squares solve for (a, b, tx, ty).
    rows = [[x, -y, 1.0, 0.0] for x, y in src.tolist()] + [[y, x, 0.0, 1.0] for x, y in src.tolist()]
    rhs = torch.cat([dst[1, :, 0], dst[1, :, 1]])
    a, b, tx, ty = torch.linalg.lstsq(torch.tensor(rows, dtype=torch.float64), rhs.double()[:, None]).solution[:, 0]
    expected = torch.tensor([[a, -b, tx], [b, a, ty]], dtype=torch.float32)
    torch.testing.assert_close(affine[1], expected, atol=1e-4, rtol=0)


def test_chip_affine_follows_dlib_rectangle_convention():
    # Points already on the template: dlib's rectangle spans 149 px centred on (75, 75), so chip
    # pixel 0 reads frame pixel 0.5 - a half-pixel shift, not the identity.
    affine = dlib_chip_affine(dlib_template()[None])
    torch.testing.assert_close(affine[0], torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]]), atol=1e-4, rtol=0)
    # Twice as large: step (300 - 1) / 149 frame px per chip px, centre still at tform(75, 75).
    affine = dlib_chip_affine(dlib_template()[None] * 2)
    step = 299 / 149
    torch.testing.assert_close(affine[0, :, :2], torch.eye(2) * step, atol=1e-4, rtol=0)
    torch.testing.assert_close(affine[0, :, 2], torch.full((2,), 150 - 74.5 * step), atol=1e-3, rtol=0)


def test_pyramid_levels_table():
    # Level d: smallest d >= 0 with span / 2^(d+1) <= 150, span = (150 * scale - 1).
    scales = torch.tensor([0.5, 1.0, 2.0, 2.01, 4.0, 4.01, 8.5])
    affine = torch.zeros(7, 2, 3)
    affine[:, 0, 0] = affine[:, 1, 1] = (150 * scales - 1) / 149
    assert pyramid_levels(affine, 150).tolist() == [0, 0, 0, 1, 1, 2, 3]


def test_warp_reads_zero_outside_and_exact_pixels_inside():
    frame = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    shift = torch.tensor([[[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]], [[1.0, 0.0, 100.0], [0.0, 1.0, 0.0]]])
    chips = warp_chips(frame, torch.tensor([1, 0]), shift, 4)
    torch.testing.assert_close(chips[0], frame[1, :, 1:5, 2:6])
    assert torch.all(chips[1] == 0)


def test_padded_add_pads_the_smaller_operand_at_the_end():
    a = torch.ones(1, 2, 3, 3)
    b = torch.full((1, 4, 4, 4), 10.0)
    out = padded_add(a, b)
    assert out.shape == (1, 4, 4, 4)
    assert torch.all(out[:, :2, :3, :3] == 11) and out.sum() == 10 * 64 + 18


def test_network_shapes_with_random_weights():
    net = DlibResNet().eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, 150, 150)).shape == (2, 128)
        assert net.forward_features(torch.randn(1, 3, 150, 150)).shape == (1, 256, 2, 2)


def test_dlib_integer_encoding():
    from lite_convert.dlib_resnet import DlibReader

    reader = DlibReader(bytes([0x01, 0x05, 0x81, 0x11, 0x02, 0x20, 0x24, 0x00, 0x03, 0x62, 0x90, 0xF5, 0x81, 0x11]))
    assert [reader.integer(), reader.integer(), reader.integer(), reader.integer()] == [5, -17, 0x2420, 0]
    assert reader.scalar() == pytest.approx(122.782, abs=1e-4)  # dlib's stored mean red


@pytest.mark.skipif(not (SOURCES / "dlib_face_recognition_resnet_model_v1.dat").is_file(), reason="no original")
def test_packaged_weights_equal_a_fresh_conversion(tmp_path):
    from lite_convert.dlib_resnet import convert_file

    from facecli.models.weights import read_safetensors

    fresh, meta = read_safetensors(convert_file(SOURCES / "dlib_face_recognition_resnet_model_v1.dat", tmp_path))
    packaged = load_dlib_resnet().net.state_dict()
    assert set(fresh) == set(packaged)
    for key, value in fresh.items():
        torch.testing.assert_close(packaged[key], value.float(), atol=0, rtol=0)
    assert float(meta["fp16_max_embedding_change"]) < 1e-3
