"""Camera paths through keyframes: through every keyframe, straight and evenly paced on a
line, the half-way rotation between two keyframes, continuous velocity at a keyframe."""

import math

import pytest
import torch

from sparse3d.geometry.camera_path import catmull_rom, interpolate_poses
from sparse3d.geometry.rotations import rotmats_from_quats


def _pose(yaw: float, position) -> torch.Tensor:
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = rotmats_from_quats(torch.tensor([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)], dtype=torch.float64))
    pose[:3, 3] = torch.tensor(position, dtype=torch.float64)
    return pose


def test_the_path_passes_through_every_keyframe():
    keys = torch.stack([_pose(0.0, (0, 0, 0)), _pose(1.0, (1, 2, 0)), _pose(-0.5, (3, 1, 1)), _pose(2.5, (4, -1, 2))])
    path = interpolate_poses(keys, 31)  # keyframe k at frame 10 k
    torch.testing.assert_close(path[::10], keys, atol=1e-9, rtol=0)
    assert torch.allclose(path[:, :3, :3] @ path[:, :3, :3].transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(31, 3, 3))


def test_evenly_spaced_keys_on_a_line_give_an_even_straight_path():
    keys = torch.stack([_pose(0.3, (float(k), 0, 0)) for k in range(4)])
    path = interpolate_poses(keys, 13)
    # Inner segments of a uniform Catmull-Rom through evenly spaced points are linear.
    torch.testing.assert_close(path[4:9, 0, 3], torch.linspace(1, 2, 5, dtype=torch.float64), atol=1e-12, rtol=0)
    assert path[:, 1:3, 3].abs().max() < 1e-12
    torch.testing.assert_close(path[:, :3, :3], keys[0, :3, :3].expand(13, 3, 3), atol=1e-12, rtol=0)


def test_half_way_between_two_keyframes_is_the_half_rotation():
    path = interpolate_poses(torch.stack([_pose(0.0, (0, 0, 0)), _pose(math.pi / 2, (2, 0, 0))]), 3)
    torch.testing.assert_close(path[1], _pose(math.pi / 4, (1, 0, 0)), atol=1e-12, rtol=0)
    # Also across the quaternion sign flip: a key given as -q is the same rotation.
    flipped = _pose(math.pi / 2 + 2 * math.pi, (2, 0, 0))
    torch.testing.assert_close(interpolate_poses(torch.stack([_pose(0.0, (0, 0, 0)), flipped]), 3)[1], path[1],
                               atol=1e-12, rtol=0)


def test_velocity_is_continuous_at_a_keyframe():
    points = torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, 1.0], [4.0, 4.0]], dtype=torch.float64)
    eps = 1e-6
    before = (catmull_rom(points, torch.tensor([1.0], dtype=torch.float64)) - catmull_rom(points, torch.tensor([1.0 - eps], dtype=torch.float64))) / eps
    after = (catmull_rom(points, torch.tensor([1.0 + eps], dtype=torch.float64)) - catmull_rom(points, torch.tensor([1.0], dtype=torch.float64))) / eps
    torch.testing.assert_close(before, after, atol=1e-4, rtol=0)
    torch.testing.assert_close(after[0], 0.5 * (points[2] - points[0]), atol=1e-4, rtol=0)  # Catmull-Rom's tangent


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one keyframe"):
        interpolate_poses(torch.zeros(0, 4, 4), 5)
    assert interpolate_poses(_pose(0.2, (1, 2, 3))[None], 4).shape == (4, 4, 4)
