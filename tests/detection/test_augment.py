"""Global augmentations: points and boxes move together, inverses, hand-checked headings
and velocities, determinism."""

import math

import numpy as np
import pytest

from sparse3d.detection.augment import (
    AugmentConfig,
    augment,
    flip_x,
    flip_y,
    rotate_z,
    scale,
    translate,
    wrap_angle,
)
from sparse3d.geometry.poses import points_in_boxes
from sparse3d.geometry.rotations import yaw_matrices


def _inside(points, boxes, grow=1.0):
    """bool [M, P] membership of the points in the (optionally grown) boxes."""
    return points_in_boxes(points[:, :3], boxes[:, :3], yaw_matrices(boxes[:, 6]), boxes[:, 3:6] * grow)


def _scene(seed=0, m=6, p=3000):
    """float32 [P, 5] points (a third drawn inside the boxes) and float64 [M, 9] boxes; only
    points clearly inside or clearly outside every box are kept, so float32 rounding in
    a transform cannot move one across a face."""
    rng = np.random.default_rng(seed)
    boxes = np.concatenate([rng.uniform(-30, 30, (m, 2)), rng.uniform(-1, 1, (m, 1)), rng.uniform(0.5, 5, (m, 3)),
                            rng.uniform(-np.pi, np.pi, (m, 1)), rng.normal(0, 3, (m, 2))], 1)
    local = rng.uniform(-0.5, 0.5, (p // 3, 3)) * boxes[rng.integers(m, size=p // 3), 3:6]
    owner = rng.integers(m, size=p // 3)
    inner = np.einsum("pij,pj->pi", yaw_matrices(boxes[owner, 6]), local) + boxes[owner, :3]
    outer = np.concatenate([rng.uniform(-35, 35, (p - p // 3, 2)), rng.uniform(-3, 3, (p - p // 3, 1))], 1)
    xyz = np.concatenate([inner, outer])
    points = np.concatenate([xyz, rng.uniform(0, 1, (p, 1)), rng.uniform(0, 0.5, (p, 1))], 1).astype(np.float32)
    clear = (_inside(points, boxes, 0.98) == _inside(points, boxes, 1.02)).all(0)
    return points[clear], boxes


TRANSFORMS = {
    "flip_x": flip_x,
    "flip_y": flip_y,
    "rotate_z": lambda p, b: rotate_z(p, b, 0.7),
    "rotate_z_large": lambda p, b: rotate_z(p, b, -2.9),
    "scale": lambda p, b: scale(p, b, 1.08),
    "translate": lambda p, b: translate(p, b, [0.4, -0.3, 0.2]),
}


@pytest.mark.parametrize("name", TRANSFORMS)
def test_points_inside_a_box_stay_inside(name):
    points, boxes = _scene()
    before = _inside(points, boxes)
    assert before.any(1).all()  # every box holds points
    new_points, new_boxes = TRANSFORMS[name](points, boxes)
    np.testing.assert_array_equal(_inside(new_points, new_boxes), before)
    assert new_points.dtype == points.dtype and new_boxes.dtype == boxes.dtype
    assert ((new_boxes[:, 6] >= -np.pi) & (new_boxes[:, 6] < np.pi)).all()
    np.testing.assert_array_equal(new_points[:, 3:], points[:, 3:])  # features ride along


def test_augment_keeps_points_in_boxes_for_many_draws():
    points, boxes = _scene(seed=1)
    before = _inside(points, boxes)
    for seed in range(20):
        new_points, new_boxes = augment(points, boxes, AugmentConfig(), np.random.default_rng(seed))
        np.testing.assert_array_equal(_inside(new_points, new_boxes), before)
        assert ((new_boxes[:, 6] >= -np.pi) & (new_boxes[:, 6] < np.pi)).all()


def test_inputs_are_not_modified():
    points, boxes = _scene()
    p0, b0 = points.copy(), boxes.copy()
    for transform in TRANSFORMS.values():
        transform(points, boxes)
    augment(points, boxes, AugmentConfig(), np.random.default_rng(0))
    np.testing.assert_array_equal(points, p0)
    np.testing.assert_array_equal(boxes, b0)


def _assert_same_scene(a, b, atol):
    np.testing.assert_allclose(a[0], b[0], atol=atol)
    np.testing.assert_allclose(np.delete(a[1], 6, 1), np.delete(b[1], 6, 1), atol=1e-9)
    np.testing.assert_allclose(wrap_angle(a[1][:, 6] - b[1][:, 6]), 0, atol=1e-9)


@pytest.mark.parametrize("flip", [flip_x, flip_y])
def test_flip_twice_is_identity(flip):
    points, boxes = _scene()
    _assert_same_scene(flip(*flip(points, boxes)), (points, boxes), atol=0)


@pytest.mark.parametrize("angle", [0.3, -1.2, 3.0])
def test_rotate_then_back_is_identity(angle):
    points, boxes = _scene()
    _assert_same_scene(rotate_z(*rotate_z(points, boxes, angle), -angle), (points, boxes), atol=1e-5)


def test_scale_and_translate_inverses():
    points, boxes = _scene()
    _assert_same_scene(scale(*scale(points, boxes, 1.25), 0.8), (points, boxes), atol=1e-5)
    _assert_same_scene(translate(*translate(points, boxes, [1, 2, 3]), [-1, -2, -3]), (points, boxes), atol=1e-5)


def test_hand_checked_headings_and_velocities():
    box = np.array([[1.0, 2.0, 0.5, 4.0, 2.0, 1.5, 0.3, 1.0, 2.0]])
    point = np.array([[1.0, 2.0, 0.5, 0.7]], np.float32)
    _, b = flip_x(point, box)
    np.testing.assert_allclose(b[0], [1, -2, 0.5, 4, 2, 1.5, -0.3, 1, -2])
    _, b = flip_y(point, box)  # heading -(0.3 + pi) wrapped into [-pi, pi)
    np.testing.assert_allclose(b[0], [-1, 2, 0.5, 4, 2, 1.5, math.pi - 0.3, -1, 2])
    p, b = rotate_z(point, box, math.pi / 2)  # (x, y) -> (-y, x)
    np.testing.assert_allclose(b[0], [-2, 1, 0.5, 4, 2, 1.5, 0.3 + math.pi / 2, -2, 1], atol=1e-12)
    np.testing.assert_allclose(p[0], [-2, 1, 0.5, 0.7], atol=1e-6)
    p, b = scale(point, box, 2.0)
    np.testing.assert_allclose(b[0], [2, 4, 1, 8, 4, 3, 0.3, 2, 4])
    np.testing.assert_allclose(p[0], [2, 4, 1, 0.7], atol=1e-6)
    _, b = translate(point, box, [1, 1, 1])
    np.testing.assert_allclose(b[0], [2, 3, 1.5, 4, 2, 1.5, 0.3, 1, 2])  # velocity unchanged
    # The heading after a flip still points along the mirrored motion: a box driving along
    # its heading at speed 1 keeps velocity = (cos h, sin h).
    moving = np.array([[0, 0, 0, 4, 2, 1.5, 0.3, math.cos(0.3), math.sin(0.3)]])
    for transform in (flip_x, flip_y, lambda p, b: rotate_z(p, b, 2.0)):
        _, b = transform(point, moving)
        np.testing.assert_allclose(b[0, 7:9], [math.cos(b[0, 6]), math.sin(b[0, 6])], atol=1e-12)


def test_nan_velocity_stays_nan_and_seven_column_boxes_work():
    points, boxes = _scene()
    boxes[0, 7:9] = np.nan
    _, b = augment(points, boxes, AugmentConfig(), np.random.default_rng(3))
    assert np.isnan(b[0, 7:9]).all() and np.isfinite(b[1:]).all()
    p7, b7 = augment(points, boxes[:, :7], AugmentConfig(), np.random.default_rng(3))
    _, b9 = augment(points, boxes, AugmentConfig(), np.random.default_rng(3))
    np.testing.assert_array_equal(b7, b9[:, :7])


def test_augment_is_deterministic_from_the_generator_and_follows_the_config():
    points, boxes = _scene()
    a = augment(points, boxes, AugmentConfig(), np.random.default_rng(5))
    b = augment(points, boxes, AugmentConfig(), np.random.default_rng(5))
    c = augment(points, boxes, AugmentConfig(), np.random.default_rng(6))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    identity = AugmentConfig(flip_axes=(), rotation_range=(0, 0), scale_range=(1, 1), translation_std=(0, 0, 0))
    p, b = augment(points, boxes, identity, np.random.default_rng(0))
    np.testing.assert_array_equal(p, points)
    np.testing.assert_allclose(b, boxes, atol=1e-12)
    # Always flipping along both axes is a rotation by pi.
    flips = AugmentConfig(flip_probability=1.0, rotation_range=(0, 0), scale_range=(1, 1), translation_std=(0, 0, 0))
    _assert_same_scene(augment(points, boxes, flips, np.random.default_rng(0)), rotate_z(points, boxes, math.pi),
                       atol=1e-5)


def test_augment_draws_stay_in_their_ranges():
    """Scale and rotation recovered from a unit box: inside the configured ranges."""
    config = AugmentConfig(flip_axes=(), translation_std=(0, 0, 0))
    box = np.array([[0, 0, 0, 1, 1, 1, 0, 0, 0]], np.float64)
    point = np.zeros((1, 3), np.float32)
    scales, angles = [], []
    for seed in range(200):
        _, b = augment(point, box, config, np.random.default_rng(seed))
        scales.append(b[0, 3])
        angles.append(b[0, 6])
    assert 0.9 <= min(scales) < 0.92 and 1.08 < max(scales) <= 1.1
    assert -math.pi / 4 <= min(angles) < -0.7 and 0.7 < max(angles) <= math.pi / 4


def test_bad_inputs_are_named():
    points, boxes = _scene()
    with pytest.raises(ValueError, match=r"points must be a float \[P, F >= 3\]"):
        flip_x(points[:, :2], boxes)
    with pytest.raises(ValueError, match=r"boxes must be a float \[M, 7\] or \[M, 9\]"):
        flip_y(points, boxes[:, :8])
    with pytest.raises(ValueError, match="offset must have 3 values"):
        translate(points, boxes, [1, 2])
    with pytest.raises(ValueError, match="factor must be > 0"):
        scale(points, boxes, 0.0)
    with pytest.raises(ValueError, match="flip_axes"):
        AugmentConfig(flip_axes=("z",))
    with pytest.raises(ValueError, match="flip_probability"):
        AugmentConfig(flip_probability=1.5)
    with pytest.raises(ValueError, match="rotation_range"):
        AugmentConfig(rotation_range=(1.0, -1.0))
    with pytest.raises(ValueError, match="translation_std"):
        AugmentConfig(translation_std=(0.5, 0.5))
