"""Box conventions: quaternions, poses, point-in-box and LiDAR <-> global conversion."""

import numpy as np
import pytest

from sparse3d.detection.boxes import global_boxes_to_lidar, lidar_boxes_to_global
from sparse3d.geometry.poses import Pose, points_in_boxes
from sparse3d.geometry.rotations import (
    quaternion_yaw,
    quats_from_rotmats,
    rotmats_from_quats,
    yaw_to_quaternion,
)


def _random_pose(rng, tilt=0.05):
    q = np.array([1.0, *rng.normal(0, tilt, 2), rng.normal(0, 1)])
    return Pose.from_quaternion(rng.uniform(-500, 500, 3), q / np.linalg.norm(q))


def _random_boxes(rng, n):
    return np.column_stack([rng.uniform(-50, 50, (n, 3)), rng.uniform(0.3, 8, (n, 3)),
                            rng.uniform(-np.pi, np.pi, n), rng.normal(0, 5, (n, 2))])


def test_quaternion_matrix_round_trip():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(100, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q *= np.sign(q[:, :1])
    m = rotmats_from_quats(q)
    np.testing.assert_allclose(m @ np.swapaxes(m, 1, 2), np.broadcast_to(np.eye(3), m.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(m), 1.0, atol=1e-12)
    np.testing.assert_allclose(quats_from_rotmats(m), q, atol=1e-12)
    # Unnormalised input is normalised first; the zero quaternion has yaw 0.
    np.testing.assert_allclose(rotmats_from_quats(3 * q[0]), m[0], atol=1e-12)
    assert quaternion_yaw(np.zeros(4)) == 0.0


def test_yaw_is_the_heading_of_the_x_axis():
    yaw = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(quaternion_yaw(yaw_to_quaternion(yaw)), yaw, atol=1e-12)
    # A rotation about y by pi/8 (pitch) leaves the heading at 0 ...
    pitch = np.array([np.cos(np.pi / 16), 0.0, np.sin(np.pi / 16), 0.0])
    assert abs(quaternion_yaw(pitch)) < 1e-15
    # ... and for yaw followed by roll the heading is still the yaw.
    roll = quats_from_rotmats(rotmats_from_quats(yaw_to_quaternion(0.7)) @ rotmats_from_quats(
        np.array([np.cos(0.1), np.sin(0.1), 0.0, 0.0])))
    np.testing.assert_allclose(quaternion_yaw(roll), 0.7, atol=1e-12)


def test_points_in_boxes_inclusive_bounds():
    centres = np.array([[0.0, 0.0, 0.0]])
    rot = rotmats_from_quats(yaw_to_quaternion(np.array([np.pi / 2])))
    extents = np.array([[4.0, 2.0, 1.0]])  # after the 90 degree yaw, length runs along world y
    points = np.array([[0, 2.0, 0], [0, 2.01, 0], [1.0, 0, 0], [1.01, 0, 0], [0, 0, 0.5], [0, 0, -0.51]])
    np.testing.assert_array_equal(points_in_boxes(points, centres, rot, extents)[0], [1, 0, 1, 0, 1, 0])


@pytest.mark.parametrize("seed", [0, 1])
def test_lidar_global_round_trip(seed):
    rng = np.random.default_rng(seed)
    pose = _random_pose(rng, tilt=0.0)
    boxes = _random_boxes(rng, 50)
    fields = lidar_boxes_to_global(boxes, pose)
    back = global_boxes_to_lidar(fields["translation"], fields["size"], fields["rotation"], fields["velocity"], pose)
    np.testing.assert_allclose(back[:, :6], boxes[:, :6], atol=1e-9)
    np.testing.assert_allclose(np.angle(np.exp(1j * (back[:, 6] - boxes[:, 6]))), 0.0, atol=1e-9)
    np.testing.assert_allclose(back[:, 7:], boxes[:, 7:], atol=1e-9)


def test_lidar_to_global_matches_devkit_box_transforms():
    pytest.importorskip("nuscenes")
    from nuscenes.utils.data_classes import Box
    from pyquaternion import Quaternion

    rng = np.random.default_rng(3)
    ego, sensor = _random_pose(rng), _random_pose(rng)
    boxes = _random_boxes(rng, 20)
    fields = lidar_boxes_to_global(boxes, ego.compose(sensor))
    for i, b in enumerate(boxes):
        box = Box(b[:3], b[[4, 3, 5]], Quaternion(axis=[0, 0, 1], radians=b[6]), velocity=(b[7], b[8], 0.0))
        for pose in (sensor, ego):  # the mmdet3d lidar -> ego -> global pattern
            box.rotate(Quaternion(matrix=pose.rotation))
            box.translate(pose.translation)
        np.testing.assert_allclose(fields["translation"][i], box.center, atol=1e-9)
        np.testing.assert_allclose(fields["size"][i], box.wlh, atol=1e-12)
        np.testing.assert_allclose(rotmats_from_quats(fields["rotation"][i]), box.rotation_matrix, atol=1e-12)
        np.testing.assert_allclose(fields["velocity"][i], box.velocity[:2], atol=1e-9)
