"""Global augmentations of a LiDAR scene: points and boxes transformed together.

Each transform is a small function that returns new arrays (its inputs are never
modified). Boxes are LiDAR-frame ``[x, y, z, dx, dy, dz, yaw]`` with ``dx`` along the
heading, optionally followed by the ground velocity ``(vx, vy)`` (then ``[M, 9]``); a NaN
velocity stays NaN. Headings come back normalised to ``[-pi, pi)``.

:func:`augment` draws the random parameters from a numpy ``Generator`` and applies them in
OpenPCDet's order for CenterPoint on nuScenes: flip along x, flip along y, rotation about
z, scaling, translation.

Examples:
    >>> rng = np.random.default_rng(0)
    >>> points, boxes = augment(points, boxes, AugmentConfig(), rng)   # [P, 5], [M, 9]
"""

import math
from dataclasses import dataclass, field

import numpy as np

from sparse3d.engine.config import at_least, between, check_ranges


@dataclass(frozen=True)
class AugmentConfig:
    """The random global augmentations of :func:`augment` (defaults: OpenPCDet's
    ``cbgs_voxel0075_res3d_centerpoint`` on nuScenes)."""

    flip_axes: tuple[str, ...] = ("x", "y")
    """Axes to flip along, each independently: "x" mirrors y (y -> -y), "y" mirrors x."""
    flip_probability: float = field(default=0.5, metadata=between(0, 1))
    """Probability of each flip, in [0, 1]."""
    rotation_range: tuple[float, ...] = (-math.pi / 4, math.pi / 4)
    """[low, high] of the uniform rotation angle about +z, radians."""
    scale_range: tuple[float, ...] = field(default=(0.9, 1.1), metadata=at_least(0))
    """[low, high] of the uniform scale factor (> 0)."""
    translation_std: tuple[float, ...] = field(default=(0.5, 0.5, 0.5), metadata=at_least(0))
    """Standard deviation (metres) of the Gaussian offset along x, y, z."""

    def __post_init__(self):
        check_ranges(self)
        if any(axis not in ("x", "y") for axis in self.flip_axes):
            raise ValueError(f"AugmentConfig.flip_axes: expected a list of 'x' and 'y', got {list(self.flip_axes)}")
        for name in ("rotation_range", "scale_range"):
            low_high = getattr(self, name)
            if len(low_high) != 2 or low_high[0] > low_high[1]:
                raise ValueError(f"AugmentConfig.{name}: expected [low, high] with low <= high, got {list(low_high)}")
        if self.scale_range[0] <= 0:
            raise ValueError(f"AugmentConfig.scale_range: scale factors must be > 0, got {list(self.scale_range)}")
        if len(self.translation_std) != 3:
            raise ValueError(f"AugmentConfig.translation_std: expected 3 values (x, y, z), "
                             f"got {list(self.translation_std)}")


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Angles wrapped to ``[-pi, pi)`` (OpenPCDet's ``limit_period(a, 0.5, 2 pi)``): float [...] -> same."""
    return angle - np.floor(angle / (2 * np.pi) + 0.5) * (2 * np.pi)


def flip_x(points: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirrors the scene across the x axis (OpenPCDet ``random_flip_along_x``).

    y -> -y for points and box centres, heading -> -heading, vy -> -vy.

    Args:
        points: float [P, F >= 3], x, y, z first (LiDAR frame).
        boxes: float [M, 7] or [M, 9] (x, y, z, dx, dy, dz, yaw[, vx, vy]).

    Returns:
        (points [P, F], boxes [M, 7 or 9]), new arrays of the input dtypes.
    """
    return _mirror(points, boxes, axis=1)


def flip_y(points: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirrors the scene across the y axis (OpenPCDet ``random_flip_along_y``).

    x -> -x for points and box centres, heading -> -(heading + pi), vx -> -vx.

    Args:
        points: float [P, F >= 3], x, y, z first (LiDAR frame).
        boxes: float [M, 7] or [M, 9] (x, y, z, dx, dy, dz, yaw[, vx, vy]).

    Returns:
        (points [P, F], boxes [M, 7 or 9]), new arrays of the input dtypes.
    """
    return _mirror(points, boxes, axis=0)


def _mirror(points: np.ndarray, boxes: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Negates coordinate ``axis`` (0: x, 1: y) of points, box centres and velocities; the
    heading follows (OpenPCDet's formulas: -yaw across the x axis, -(yaw + pi) across y)."""
    points, boxes = _check(points, boxes)
    points[:, axis] = -points[:, axis]
    boxes[:, axis] = -boxes[:, axis]
    boxes[:, 6] = wrap_angle(-boxes[:, 6] if axis == 1 else -(boxes[:, 6] + np.pi))
    if boxes.shape[1] == 9:
        boxes[:, 7 + axis] = -boxes[:, 7 + axis]
    return points, boxes


def rotate_z(points: np.ndarray, boxes: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotates the scene by ``angle`` radians about +z (counter-clockwise seen from above,
    x towards y; OpenPCDet ``global_rotation``).

    Points and box centres are rotated, heading += angle, and (vx, vy) rotated.

    Args:
        points: float [P, F >= 3], x, y, z first (LiDAR frame).
        boxes: float [M, 7] or [M, 9] (x, y, z, dx, dy, dz, yaw[, vx, vy]).
        angle: radians.

    Returns:
        (points [P, F], boxes [M, 7 or 9]), new arrays of the input dtypes.
    """
    points, boxes = _check(points, boxes)
    c, s = math.cos(angle), math.sin(angle)
    rotation = np.array([[c, -s], [s, c]])  # [2, 2], column vectors: p' = R p
    # In float64, then back to the points' dtype: float32 rounding of cos/sin would move
    # far points by more than a millimetre.
    points[:, :2] = points[:, :2].astype(np.float64) @ rotation.T
    boxes[:, :2] = boxes[:, :2].astype(np.float64) @ rotation.T
    boxes[:, 6] = wrap_angle(boxes[:, 6] + angle)
    if boxes.shape[1] == 9:
        boxes[:, 7:9] = boxes[:, 7:9].astype(np.float64) @ rotation.T
    return points, boxes


def scale(points: np.ndarray, boxes: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Scales the scene about the origin (OpenPCDet ``global_scaling``): point xyz, box
    centres, box sizes and velocities are multiplied by ``factor``.

    Args:
        points: float [P, F >= 3], x, y, z first (LiDAR frame).
        boxes: float [M, 7] or [M, 9] (x, y, z, dx, dy, dz, yaw[, vx, vy]).
        factor: > 0.

    Returns:
        (points [P, F], boxes [M, 7 or 9]), new arrays of the input dtypes.
    """
    if not factor > 0:
        raise ValueError(f"scale: factor must be > 0, got {factor}")
    points, boxes = _check(points, boxes)
    points[:, :3] *= factor
    boxes[:, :6] *= factor
    boxes[:, 7:9] *= factor
    return points, boxes


def translate(points: np.ndarray, boxes: np.ndarray, offset) -> tuple[np.ndarray, np.ndarray]:
    """Shifts the scene by ``offset`` (OpenPCDet ``random_world_translation``): added to
    point xyz and box centres.

    Args:
        points: float [P, F >= 3], x, y, z first (LiDAR frame).
        boxes: float [M, 7] or [M, 9] (x, y, z, dx, dy, dz, yaw[, vx, vy]).
        offset: float [3], metres.

    Returns:
        (points [P, F], boxes [M, 7 or 9]), new arrays of the input dtypes.
    """
    offset = np.asarray(offset, np.float64)
    if offset.shape != (3,):
        raise ValueError(f"translate: offset must have 3 values (x, y, z), got shape {list(offset.shape)}")
    points, boxes = _check(points, boxes)
    points[:, :3] += offset.astype(points.dtype)
    boxes[:, :3] += offset
    return points, boxes


def augment(
    points: np.ndarray, boxes: np.ndarray, config: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Applies the random global augmentations in the reference order: flip (per axis of
    ``config.flip_axes``, each with ``flip_probability``), rotation, scaling, translation.

    The draws are always made in the same order, whatever the outcome, so the same
    generator state gives the same transform.

    Args:
        points: float [P, F >= 3], x, y, z first (LiDAR frame).
        boxes: float [M, 7] or [M, 9] (x, y, z, dx, dy, dz, yaw[, vx, vy]).
        config: the ranges.
        rng: numpy random generator (consumed).

    Returns:
        (points [P, F], boxes [M, 7 or 9]), new arrays of the input dtypes; headings in
        [-pi, pi).
    """
    points, boxes = _check(points, boxes)
    for axis in config.flip_axes:
        if rng.random() < config.flip_probability:
            points, boxes = (flip_x if axis == "x" else flip_y)(points, boxes)
    points, boxes = rotate_z(points, boxes, float(rng.uniform(*config.rotation_range)))
    points, boxes = scale(points, boxes, float(rng.uniform(*config.scale_range)))
    return translate(points, boxes, rng.normal(0.0, 1.0, 3) * np.asarray(config.translation_std, np.float64))


def _check(points: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated copies of the inputs (the transforms then work in place on the copies)."""
    points, boxes = np.asarray(points), np.asarray(boxes)
    if points.ndim != 2 or points.shape[1] < 3 or not np.issubdtype(points.dtype, np.floating):
        raise ValueError(f"points must be a float [P, F >= 3] array (x, y, z first), got {points.dtype} "
                         f"{list(points.shape)}")
    if boxes.ndim != 2 or boxes.shape[1] not in (7, 9) or not np.issubdtype(boxes.dtype, np.floating):
        raise ValueError(f"boxes must be a float [M, 7] or [M, 9] array (x, y, z, dx, dy, dz, yaw[, vx, vy]), "
                         f"got {boxes.dtype} {list(boxes.shape)}")
    return points.copy(), boxes.copy()
