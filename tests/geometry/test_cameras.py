"""Camera conventions: quaternions, OpenGL <-> OpenCV poses, look-at, projection."""

import math

import pytest
import torch

from sparse3d.geometry.cameras import (
    Cameras,
    intrinsics_from_fov,
    invert_rigid,
    look_at_viewmats,
    opengl_c2w_from_viewmats,
    viewmats_from_opengl_c2w,
)
from sparse3d.geometry.rotations import quats_from_rotmats, rotmats_from_quats


def _random_quats(n: int, seed: int) -> torch.Tensor:
    q = torch.nn.functional.normalize(
        torch.randn(n, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=-1
    )
    return torch.where(q[:, :1] < 0, -q, q)


def test_quaternion_known_rotation():
    half = math.sqrt(0.5)
    rot = rotmats_from_quats(torch.tensor([half, 0.0, 0.0, half], dtype=torch.float64))  # 90 deg about z
    torch.testing.assert_close(rot, torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64))


def test_quaternion_round_trip_including_half_turns():
    quats = _random_quats(500, seed=0)
    # Half turns (w = 0) and near half turns are where a trace-only formula breaks.
    quats[:3] = torch.tensor([[0.0, 1, 0, 0], [0.0, 0, 1, 0], [1e-9, 0, 0, 1]], dtype=torch.float64)
    rots = rotmats_from_quats(quats)
    torch.testing.assert_close(rots @ rots.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(500, 3, 3))
    back = quats_from_rotmats(rots)
    torch.testing.assert_close(rotmats_from_quats(back), rots)
    torch.testing.assert_close(back[3:], quats[3:])


def test_opengl_pose_conversion_semantics():
    # An OpenGL camera at the origin with identity pose looks along -z with +y up.
    viewmat = viewmats_from_opengl_c2w(torch.eye(4)[None])
    cams = Cameras(viewmat.float(), intrinsics_from_fov(60.0, 64, 48)[None], 64, 48)
    points = torch.tensor([[0.0, 0.0, -5.0], [0.0, 1.0, -5.0], [1.0, 0.0, -5.0]])
    assert torch.allclose(cams.to_camera(points)[0, :, 2], torch.tensor(5.0))
    uv = cams.project(points)[0]
    torch.testing.assert_close(uv[0], torch.tensor([32.0, 24.0]))
    assert uv[1, 1] < 24.0  # world up is image up (OpenCV +y points down)
    assert uv[2, 0] > 32.0  # world right is image right
    c2w = torch.eye(4, dtype=torch.float64).repeat(5, 1, 1)
    c2w[:, :3, :3] = rotmats_from_quats(_random_quats(5, seed=1))
    c2w[:, :3, 3] = torch.randn(5, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(opengl_c2w_from_viewmats(viewmats_from_opengl_c2w(c2w)), c2w)


def test_look_at_and_fov():
    eyes = torch.tensor([[4.0, 0.0, 1.0], [0.0, -3.0, 2.0], [-2.0, 2.0, -1.0]])
    targets = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.5]])
    K = intrinsics_from_fov(40.0, 128, 96)
    cams = Cameras(look_at_viewmats(eyes, targets), K.expand(3, 3, 3), 128, 96)
    torch.testing.assert_close(cams.centers, eyes, atol=1e-5, rtol=0)
    centre = cams.project(targets)[torch.arange(3), torch.arange(3)]
    torch.testing.assert_close(centre, torch.tensor([[64.0, 48.0]] * 3), atol=1e-4, rtol=0)
    above = cams.project(targets + torch.tensor([0.0, 0.0, 0.1]))[torch.arange(3), torch.arange(3)]
    assert (above[:, 1] < 48.0).all()  # world +z (up) appears above the centre
    # A point at half the horizontal field of view lands on the image border.
    edge = torch.tensor([[math.tan(math.radians(20.0)), 0.0, 1.0]])
    assert torch.allclose(Cameras(torch.eye(4)[None], K[None], 128, 96).project(edge)[0, 0, 0], torch.tensor(128.0))


def test_invert_rigid():
    mat = torch.eye(4, dtype=torch.float64).repeat(4, 1, 1)
    mat[:, :3, :3] = rotmats_from_quats(_random_quats(4, seed=2))
    mat[:, :3, 3] = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(invert_rigid(mat), torch.linalg.inv(mat))


def test_cameras_validation():
    K = intrinsics_from_fov(40.0, 32, 32)[None]
    bad = torch.eye(4)[None].clone()
    bad[0, 0, 3] = float("nan")
    with pytest.raises(ValueError, match=r"viewmats\[0\] is not a finite rigid transform: non-finite"):
        Cameras(bad, K, 32, 32)
    with pytest.raises(ValueError, match="rotation error"):
        Cameras(torch.diag(torch.tensor([2.0, 1.0, 1.0, 1.0]))[None], K, 32, 32)
    with pytest.raises(ValueError, match="det -1"):
        Cameras(torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))[None], K, 32, 32)
    with pytest.raises(ValueError, match=r"Ks must be \[2, 3, 3\]"):
        Cameras(torch.eye(4).repeat(2, 1, 1), K, 32, 32)
    with pytest.raises(ValueError, match="positive focal"):
        Cameras(torch.eye(4)[None], -K, 32, 32)
    cams = Cameras(torch.eye(4).repeat(3, 1, 1), K.repeat(3, 1, 1), 32, 32)
    assert len(cams[1]) == 1 and len(cams[-1]) == 1 and len(cams[torch.tensor(2)]) == 1
    assert len(cams[torch.tensor([0, 2])]) == 2 and len(cams[1:]) == 2


def test_vertical_field_of_view():
    # Square pixels: a 16 x 8 image with 90 degrees across has tan(fov_y / 2) = 4 / 8.
    K = intrinsics_from_fov(90.0, 16, 8)
    cameras = Cameras(torch.eye(4).expand(2, 4, 4), K.expand(2, 3, 3), 16, 8)
    torch.testing.assert_close(cameras.fovs_y, torch.full((2,), 2 * math.atan(0.5)))
