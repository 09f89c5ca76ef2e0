"""Unit quaternions (w, x, y, z) <-> rotation matrices: the one implementation for numpy
and torch callers.

The same lines serve both array types (only ``stack``, ``sqrt``, ``where`` and
``argmax`` come from the array's own library): numpy inputs (and lists) are computed in
float64, as the nuScenes evaluation needs; torch tensors keep their dtype and device and
are differentiable. The formulas are pyquaternion's (the nuScenes devkit's), with every
sum written out in a fixed order rather than left to a library's reduction, so results
do not depend on how it vectorises; float64 torch and numpy results agree to the last
bit or two (torch's vectorised ``sqrt`` may round differently).
"""

from typing import Any, TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def rotmats_from_quats(quats: Array) -> Array:
    """Rotation matrices of quaternions (w, x, y, z), normalised first as pyquaternion does.

    Args:
        quats: float [..., 4], a torch tensor, or a numpy array or nested list. The
            all-zero quaternion gives the zero matrix (heading 0 in the nuScenes sense).

    Returns:
        [..., 3, 3] rotation matrices (row-major, ``p_rotated = R @ p``): a tensor of the
        input's dtype and device, or a float64 numpy array.
    """
    xp, q = _namespace(quats)
    sq = q[..., 0] * q[..., 0] + q[..., 1] * q[..., 1] + q[..., 2] * q[..., 2] + q[..., 3] * q[..., 3]  # [...]
    # The guard sits before the square root, so the zero quaternion gets no NaN gradient.
    q = q / xp.sqrt(xp.where(sq > 0, sq, 1.0))[..., None]
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        [w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z],
    ]
    return xp.stack([xp.stack(row, -1) for row in rows], -2)


def quats_from_rotmats(rotmats: Array) -> Array:
    """Unit quaternions (w, x, y, z) with w >= 0 of rotation matrices.

    Each of the four textbook formulas is accurate where its own component is the largest;
    the one with the largest ``4 q_i^2`` is used per matrix, so half turns (w = 0) are as
    accurate as small rotations. The result is normalised, so slightly non-orthonormal
    input (float32 round trips) still gives a unit quaternion.

    Args:
        rotmats: float [..., 3, 3] rotation matrices: a torch tensor, or a numpy array or
            nested list.

    Returns:
        [..., 4]: a tensor of the input's dtype and device, or a float64 numpy array.
    """
    xp, m = _namespace(rotmats)
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # 4 w^2, 4 x^2, 4 y^2, 4 z^2 (for an exact rotation).
    four_sq = [1 + trace, 1 + 2 * m[..., 0, 0] - trace, 1 + 2 * m[..., 1, 1] - trace, 1 + 2 * m[..., 2, 2] - trace]
    a, b, c = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]  # 4 w (x, y, z)
    d, e, f = m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1]  # 4 xy, 4 xz, 4 yz
    # Candidate i is 4 q_i q, i.e. q up to a positive (or negative) scale.
    candidates = [
        xp.stack([four_sq[0], a, b, c], -1),
        xp.stack([a, four_sq[1], d, e], -1),
        xp.stack([b, d, four_sq[2], f], -1),
        xp.stack([c, e, f, four_sq[3]], -1),
    ]
    best = xp.stack(four_sq, -1).argmax(-1)[..., None]  # [..., 1], the first maximum on ties
    q = candidates[3]
    for i in (2, 1, 0):  # a chain of where, not a gather: the same lines for numpy and torch
        q = xp.where(best == i, candidates[i], q)
    norm = xp.sqrt(q[..., 0] * q[..., 0] + q[..., 1] * q[..., 1] + q[..., 2] * q[..., 2] + q[..., 3] * q[..., 3])
    q = q / norm[..., None]  # [..., 4]
    return xp.where(q[..., :1] < 0, -q, q)


def _namespace(array: Any) -> tuple[Any, Any]:
    """(torch, the tensor) for a tensor, else (numpy, the input as a float64 array)."""
    if isinstance(array, torch.Tensor):
        return torch, array
    return np, np.asarray(array, np.float64)


def yaw_matrices(yaw: np.ndarray) -> np.ndarray:
    """Rotations about +z by ``yaw`` radians: float [...] -> float64 [..., 3, 3]."""
    c, s = np.cos(np.asarray(yaw, np.float64)), np.sin(np.asarray(yaw, np.float64))
    zeros, ones = np.zeros_like(c), np.ones_like(c)
    return np.stack([np.stack([c, -s, zeros], -1), np.stack([s, c, zeros], -1), np.stack([zeros, zeros, ones], -1)], -2)


def yaw_to_quaternion(yaw: np.ndarray) -> np.ndarray:
    """Quaternions (w, x, y, z) of rotations by ``yaw`` radians about +z: float [...] -> float64 [..., 4]."""
    half = 0.5 * np.asarray(yaw, np.float64)
    zeros = np.zeros_like(half)
    return np.stack([np.cos(half), zeros, zeros, np.sin(half)], -1)


def quaternion_yaw(q: np.ndarray) -> np.ndarray:
    """Heading of quaternions (w, x, y, z): the angle of the rotated +x axis in the xy plane.

    This is the nuScenes definition; with roll or pitch it differs from 2 atan2(z, w).

    Args:
        q: float [..., 4].

    Returns:
        float64 [...] radians in (-pi, pi].
    """
    m = rotmats_from_quats(q)
    return np.arctan2(m[..., 1, 0], m[..., 0, 0])
