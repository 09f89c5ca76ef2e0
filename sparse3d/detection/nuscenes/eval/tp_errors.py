"""The per-match error measures of the nuScenes detection eval, vectorised over matches."""

import numpy as np

from sparse3d.geometry.rotations import quaternion_yaw


def center_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """xy distance of box centres: float [M, >=2] x2 -> float64 [M] (z is ignored)."""
    d = np.asarray(a, np.float64)[:, :2] - np.asarray(b, np.float64)[:, :2]
    return np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1])


def velocity_l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """L2 norm of the velocity difference: float [M, 2] x2 -> float64 [M]; NaN if either is NaN."""
    return center_distance(a, b)


def scale_iou(size_a: np.ndarray, size_b: np.ndarray) -> np.ndarray:
    """IoU of boxes aligned at their centres and orientations.

    Args:
        size_a, size_b: float [M, 3] (w, l, h), all > 0 (submissions are validated).

    Returns:
        float64 [M] in (0, 1].
    """
    size_a, size_b = np.asarray(size_a, np.float64), np.asarray(size_b, np.float64)
    if (size_a <= 0).any() or (size_b <= 0).any():
        raise ValueError("scale_iou: box sizes must be > 0")
    inter = np.minimum(size_a, size_b)
    volume_a = size_a[:, 0] * size_a[:, 1] * size_a[:, 2]
    volume_b = size_b[:, 0] * size_b[:, 1] * size_b[:, 2]
    intersection = inter[:, 0] * inter[:, 1] * inter[:, 2]
    return intersection / (volume_a + volume_b - intersection)


def angle_diff(x: np.ndarray, y: np.ndarray, period: float) -> np.ndarray:
    """Signed difference x - y modulo ``period`` (radians), wrapped into (-pi, pi]."""
    diff = np.mod(np.asarray(x, np.float64) - y + period / 2, period) - period / 2
    return np.where(diff > np.pi, diff - 2 * np.pi, diff)


def yaw_diff(rotation_a: np.ndarray, rotation_b: np.ndarray, period: float = 2 * np.pi) -> np.ndarray:
    """Absolute heading difference of quaternions (w, x, y, z) [M, 4] x2 -> float64 [M].

    Headings are nuScenes yaws (the rotated x axis in the xy plane); ``period`` is pi for
    symmetric objects (barriers)."""
    return heading_diff(quaternion_yaw(rotation_a), quaternion_yaw(rotation_b), period)


def heading_diff(yaw_a: np.ndarray, yaw_b: np.ndarray, period: float = 2 * np.pi) -> np.ndarray:
    """Absolute difference of headings (radians) [M] x2 -> float64 [M], modulo ``period``."""
    return np.abs(angle_diff(yaw_a, yaw_b, period))


def attribute_accuracy(attr_gt: np.ndarray, attr_pred: np.ndarray) -> np.ndarray:
    """1.0 / 0.0 per match whether the attribute indices agree; NaN where the GT has none (-1)."""
    attr_gt = np.asarray(attr_gt)
    return np.where(attr_gt < 0, np.nan, (attr_gt == np.asarray(attr_pred)).astype(float))


def cummean(x: np.ndarray) -> np.ndarray:
    """NaN-aware cumulative mean: float [N] -> float64 [N]; 0 before the first value, all
    ones if every value is NaN (an undefined error counts as the worst, 1)."""
    x = np.asarray(x, np.float64)
    nan = np.isnan(x)
    if nan.all():
        return np.ones(len(x))
    sums = np.nancumsum(x)
    counts = np.cumsum(~nan)
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts != 0)
