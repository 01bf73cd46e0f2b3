"""facecli.ops.pose: similarity fit against a plain numpy loop, angle conventions by hand cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facecli.ops.pose import euler_to_matrix, head_pose, matrix_to_euler, similarity_fit

DEG = math.pi / 180


def _umeyama_loop(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """One pair at a time, straight from the paper's formulas (float64)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    sigma = sum(np.outer(b[i], a[i]) for i in range(len(a))) / len(a)
    u, d, vt = np.linalg.svd(sigma)
    s = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s[2, 2] = -1
    rot = u @ s @ vt
    var = (a**2).sum() / len(a)
    scale = float(np.trace(np.diag(d) @ s) / var)
    return rot, scale, mu_d - scale * rot @ mu_s


def _random_rotation(gen: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.linalg.det(q) > 0 else -q


@pytest.fixture(scope="module")
def canonical() -> torch.Tensor:
    from facecli.models.lite import load_canonical_face

    return load_canonical_face().double()


def test_similarity_fit_matches_loop_and_recovers_transform():
    gen = torch.Generator().manual_seed(0)
    src = torch.randn(5, 40, 3, generator=gen, dtype=torch.float64)
    rots = torch.stack([_random_rotation(gen) for _ in range(5)])
    scales = torch.rand(5, generator=gen, dtype=torch.float64) * 3 + 0.5
    shifts = torch.randn(5, 3, generator=gen, dtype=torch.float64) * 10
    noise = torch.randn(5, 40, 3, generator=gen, dtype=torch.float64) * 0.05
    dst = scales[:, None, None] * src @ rots.transpose(1, 2) + shifts[:, None] + noise
    rot, scale, shift = similarity_fit(src, dst)
    for i in range(5):
        r_ref, s_ref, t_ref = _umeyama_loop(src[i].numpy(), dst[i].numpy())
        np.testing.assert_allclose(rot[i].numpy(), r_ref, atol=1e-10)
        assert scale[i].item() == pytest.approx(s_ref, rel=1e-10)
        np.testing.assert_allclose(shift[i].numpy(), t_ref, atol=1e-9)
    assert torch.allclose(rot, rots, atol=0.01) and torch.allclose(scale, scales, rtol=0.01)
    exact_rot, exact_scale, exact_shift = similarity_fit(src, dst - noise)
    assert torch.allclose(exact_rot, rots, atol=1e-10) and torch.allclose(exact_shift, shifts, atol=1e-9)
    assert torch.allclose(exact_scale, scales, rtol=1e-12)


def test_similarity_fit_never_reflects():
    gen = torch.Generator().manual_seed(1)
    src = torch.randn(30, 3, generator=gen, dtype=torch.float64)
    mirrored = src * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)  # best orthogonal fit is a reflection
    rot, _, _ = similarity_fit(src, mirrored)
    assert torch.linalg.det(rot).item() == pytest.approx(1.0, abs=1e-12)
    r_ref, _, _ = _umeyama_loop(src.numpy(), mirrored.numpy())
    np.testing.assert_allclose(rot.numpy(), r_ref, atol=1e-10)


@pytest.mark.parametrize(
    "angles, point, moves_to",
    [
        # pitch > 0 (chin raised): the nose tip, nearest the camera (z < 0), moves up the image (-y)
        ((30.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, -1.0, 0.0)),
        # ... and the chin (below the nose, +y) comes toward the camera (-z)
        ((30.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
        # yaw > 0 (turn to the subject's right): the nose tip moves to the viewer's left (-x)
        ((0.0, 30.0, 0.0), (0.0, 0.0, -1.0), (-1.0, 0.0, 0.0)),
        # roll > 0 (tilt to the right shoulder): the top of the head (-y) moves to the viewer's left
        ((0.0, 0.0, 30.0), (0.0, -1.0, 0.0), (-1.0, 0.0, 0.0)),
    ],
)
def test_angle_directions(angles, point, moves_to):
    pitch, yaw, roll = (torch.tensor(a * DEG, dtype=torch.float64) for a in angles)
    rot = euler_to_matrix(pitch, yaw, roll)
    p = torch.tensor(point, dtype=torch.float64)
    moved = rot @ p - p
    direction = torch.tensor(moves_to, dtype=torch.float64)
    assert (moved @ direction).item() == pytest.approx(math.sin(30 * DEG), abs=1e-12)
    assert torch.linalg.det(rot).item() == pytest.approx(1.0)


def test_round_trip_angles_matrix_angles():
    gen = torch.Generator().manual_seed(2)
    pitch = (torch.rand(200, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi * 0.99
    yaw = (torch.rand(200, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi / 2 * 0.99
    roll = (torch.rand(200, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi * 0.99
    back = matrix_to_euler(euler_to_matrix(pitch, yaw, roll))
    assert torch.allclose(back, torch.stack([pitch, yaw, roll], dim=-1), atol=1e-9)
    rots = torch.stack([_random_rotation(gen) for _ in range(50)])
    again = euler_to_matrix(*matrix_to_euler(rots).unbind(-1))
    assert torch.allclose(again, rots, atol=1e-9)


def test_gimbal_lock_still_round_trips():
    rot = euler_to_matrix(*(torch.tensor(a, dtype=torch.float64) for a in (0.4, math.pi / 2, -0.3)))
    angles = matrix_to_euler(rot)
    assert angles[1].item() == pytest.approx(math.pi / 2)
    assert torch.allclose(euler_to_matrix(*angles.unbind(-1)), rot, atol=1e-7)


def test_in_plane_rotation_changes_roll_only():
    """Rotating the whole image about the viewing axis adds to Roll whatever pitch and yaw are."""
    base = euler_to_matrix(*(torch.tensor(a * DEG, dtype=torch.float64) for a in (12.0, -20.0, 5.0)))
    # counter-clockwise on screen by 15 degrees (y down): x' = x cos + y sin, y' = -x sin + y cos
    c, s = math.cos(15 * DEG), math.sin(15 * DEG)
    screen_ccw = torch.tensor([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    angles = matrix_to_euler(screen_ccw @ base) / DEG
    assert torch.allclose(angles, torch.tensor([12.0, -20.0, 20.0], dtype=torch.float64), atol=1e-9)


@pytest.mark.parametrize("pitch, yaw, roll", [(0, 0, 0), (0, 25, 0), (0, -25, 0), (20, 0, 0), (-20, 0, 0), (10, -30, 15)])
def test_head_pose_of_rotated_canonical(canonical, pitch, yaw, roll):
    """A canonical face rotated in 3D, scaled to pixels, shifted: the fit returns the angles, centre and scale."""
    # Rotations built by hand from the conventions, not from euler_to_matrix.
    def about(axis: int, angle: float) -> torch.Tensor:
        c, s = math.cos(angle * DEG), math.sin(angle * DEG)
        i, j = [k for k in range(3) if k != axis]
        m = torch.eye(3, dtype=torch.float64)
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        if axis == 1:  # about y the right-handed sense is z -> x
            m = m.T
        return m

    rot = about(2, -roll) @ about(1, yaw) @ about(0, -pitch)  # +pitch = chin up: the nose turns toward -y
    scale, centre = 7.5, torch.tensor([300.0, 200.0, 50.0], dtype=torch.float64)
    mesh = scale * canonical @ rot.T + centre  # x, y frame px; z in the same units
    mesh = torch.cat([mesh, torch.zeros(10, 3, dtype=torch.float64) + centre])[None]  # 478 points: iris ignored
    pose = head_pose(mesh, canonical)[0]
    expected = torch.tensor([pitch, roll, yaw], dtype=torch.float64) * DEG
    assert torch.allclose(pose[:3].double(), expected, atol=1e-5)
    assert pose[3].item() == pytest.approx(300.0, abs=1e-3) and pose[4].item() == pytest.approx(200.0, abs=1e-3)
    assert pose[5].item() == pytest.approx(scale, rel=1e-5)
    # the projected nose tip moves the way the convention says
    nose_x = mesh[0, 1, 0] - centre[0] - scale * canonical[1, 0]
    if yaw and not pitch and not roll:
        assert math.copysign(1, -nose_x.item()) == math.copysign(1, yaw)
    nose_y = mesh[0, 1, 1] - centre[1] - scale * canonical[1, 1]
    if pitch and not yaw and not roll:  # chin up: the nose tip moves up the image (-y)
        assert math.copysign(1, -nose_y.item()) == math.copysign(1, pitch)


def test_head_pose_nan_rows(canonical):
    good = (6.0 * canonical + 100.0)[None].float()
    bad = good.clone()
    bad[0, 5, 2] = float("nan")
    pose = head_pose(torch.cat([good, bad]), canonical.float())
    assert torch.isfinite(pose[0]).all() and torch.isnan(pose[1]).all()
    assert pose[0, :3].abs().max().item() < 1e-4
    assert head_pose(torch.zeros(0, 478, 3), canonical.float()).shape == (0, 6)


def test_canonical_is_symmetric_and_frontal(canonical):
    from facecli.models.lite.files import lite_file
    from facecli.models.weights import read_safetensors

    tensors, _ = read_safetensors(lite_file("canonical_face").path)
    mirror = tensors["mirror"]
    assert torch.equal(mirror[mirror], torch.arange(468))
    reflected = canonical[mirror] * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    assert torch.allclose(reflected, canonical, atol=1e-6)
    assert canonical[33, 0] < 0 < canonical[263, 0]  # subject's right eye on the image's left
    assert canonical[10, 1] < canonical[1, 1] < canonical[152, 1]  # forehead above nose above chin (y down)
    assert canonical[:, 2].argmin().item() in (1, 4)  # nose tip nearest the camera (z away)
