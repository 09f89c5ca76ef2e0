"""3D boxes: quaternions, rigid poses, point-in-box tests and LiDAR <-> global conversion.

Two box conventions meet here (DESIGN.md, "Boxes"):

- **LiDAR frame** (what detectors predict): float [N, 7] ``(x, y, z, dx, dy, dz, yaw)``,
  ``dx`` along the heading, optionally ``(vx, vy)`` appended for [N, 9];
- **nuScenes global frame** (what a submission holds): ``translation`` [N, 3], ``size``
  [N, 3] as (w, l, h) = (dy, dx, dz), ``rotation`` [N, 4] quaternion (w, x, y, z) and
  ``velocity`` [N, 2].

All maths is float64 numpy: the nuScenes evaluation is defined in float64.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pose:
    """A rigid transform ``child -> parent``: ``p_parent = rotation @ p_child + translation``."""

    rotation: np.ndarray
    """float64 [3, 3] rotation matrix."""
    translation: np.ndarray
    """float64 [3] translation, metres."""

    @staticmethod
    def from_quaternion(translation, quaternion) -> "Pose":
        """Pose from a nuScenes record's ``translation`` [3] and ``rotation`` (w, x, y, z) [4]."""
        return Pose(quaternion_to_matrix(np.asarray(quaternion, np.float64)), np.asarray(translation, np.float64))

    def matrix(self) -> np.ndarray:
        """float64 [4, 4] homogeneous matrix."""
        out = np.eye(4)
        out[:3, :3], out[:3, 3] = self.rotation, self.translation
        return out

    def compose(self, inner: "Pose") -> "Pose":
        """``self ∘ inner``: first apply ``inner``, then ``self``."""
        return Pose(self.rotation @ inner.rotation, self.rotation @ inner.translation + self.translation)

    def inverse(self) -> "Pose":
        """The transform ``parent -> child``."""
        return Pose(self.rotation.T, -self.rotation.T @ self.translation)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transforms float [..., 3] points; returns float64 [..., 3]."""
        return np.asarray(points, np.float64) @ self.rotation.T + self.translation


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices of quaternions (w, x, y, z), normalised first as pyquaternion does.

    Args:
        q: float [..., 4]. The all-zero quaternion gives the zero matrix (yaw 0).

    Returns:
        float64 [..., 3, 3].
    """
    q = np.asarray(q, np.float64)
    norm = np.sqrt((q * q).sum(-1, keepdims=True))
    q = q / np.where(norm > 0, norm, 1.0)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z], -1),
    ], -2)


def matrix_to_quaternion(m: np.ndarray) -> np.ndarray:
    """Quaternions (w, x, y, z) with w >= 0 of rotation matrices float [..., 3, 3] -> float64 [..., 4]."""
    m = np.asarray(m, np.float64)
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # Four candidate formulas; each is stable where its squared component is the largest.
    cands = np.stack([
        np.stack([1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                  m[..., 1, 0] - m[..., 0, 1]], -1),
        np.stack([m[..., 2, 1] - m[..., 1, 2], 1 + 2 * m[..., 0, 0] - trace, m[..., 0, 1] + m[..., 1, 0],
                  m[..., 0, 2] + m[..., 2, 0]], -1),
        np.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 + 2 * m[..., 1, 1] - trace,
                  m[..., 1, 2] + m[..., 2, 1]], -1),
        np.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                  1 + 2 * m[..., 2, 2] - trace], -1),
    ], -2)  # [..., 4, 4]
    diag = np.stack([1 + trace, 1 + 2 * m[..., 0, 0] - trace, 1 + 2 * m[..., 1, 1] - trace,
                     1 + 2 * m[..., 2, 2] - trace], -1)
    best = np.take_along_axis(cands, diag.argmax(-1)[..., None, None], axis=-2)[..., 0, :]
    q = best / np.linalg.norm(best, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


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
    m = quaternion_to_matrix(q)
    return np.arctan2(m[..., 1, 0], m[..., 0, 0])


def points_in_boxes(points: np.ndarray, centers: np.ndarray, rotations: np.ndarray, extents: np.ndarray) -> np.ndarray:
    """Which points lie inside which oriented boxes (bounds inclusive).

    Args:
        points: float [P, 3].
        centers: float [M, 3] box centres, same frame as the points.
        rotations: float [M, 3, 3] box-to-frame rotations.
        extents: float [M, 3] full sizes along the box's own x, y, z axes.

    Returns:
        bool [M, P].
    """
    points = np.asarray(points, np.float64)
    local = np.einsum("mji,mpj->mpi", rotations, points[None, :, :] - centers[:, None, :])  # [M, P, 3]
    return (np.abs(local) <= 0.5 * extents[:, None, :]).all(-1)


def lidar_boxes_to_global(boxes: np.ndarray, lidar_to_global: Pose) -> dict[str, np.ndarray]:
    """LiDAR-frame boxes to nuScenes global-frame box fields.

    Args:
        boxes: float [N, 7] (x, y, z, dx, dy, dz, yaw) or [N, 9] with (vx, vy) in the LiDAR frame.
        lidar_to_global: the sensor pose at the sweep time (ego pose ∘ calibrated sensor).

    Returns:
        dict of float64 arrays: ``translation`` [N, 3], ``size`` [N, 3] (w, l, h),
        ``rotation`` [N, 4] (w, x, y, z) and ``velocity`` [N, 2] (zeros without vx, vy).
    """
    boxes = np.atleast_2d(np.asarray(boxes, np.float64))
    rotation = lidar_to_global.rotation @ yaw_matrices(boxes[:, 6])  # [N, 3, 3]
    velocity = np.zeros((len(boxes), 3))
    if boxes.shape[1] >= 9:
        velocity[:, :2] = boxes[:, 7:9]
    return {
        "translation": lidar_to_global.apply(boxes[:, :3]),
        "size": boxes[:, [4, 3, 5]],
        "rotation": matrix_to_quaternion(rotation),
        "velocity": (velocity @ lidar_to_global.rotation.T)[:, :2],
    }


def global_boxes_to_lidar(
    translation: np.ndarray, size: np.ndarray, rotation: np.ndarray, velocity: np.ndarray, lidar_to_global: Pose
) -> np.ndarray:
    """nuScenes global-frame boxes to LiDAR-frame boxes (the inverse of :func:`lidar_boxes_to_global`).

    Args:
        translation: float [N, 3]; size: float [N, 3] (w, l, h); rotation: float [N, 4]
        (w, x, y, z); velocity: float [N, 2] global-frame (NaN allowed, kept NaN).
        lidar_to_global: the sensor pose.

    Returns:
        float64 [N, 9] (x, y, z, dx, dy, dz, yaw, vx, vy) in the LiDAR frame; yaw is the
        heading of the box's x axis projected on the LiDAR xy plane.
    """
    to_lidar = lidar_to_global.inverse()
    n = len(translation)
    centres = to_lidar.apply(np.asarray(translation, np.float64).reshape(n, 3))
    local_rot = to_lidar.rotation @ quaternion_to_matrix(np.asarray(rotation, np.float64).reshape(n, 4))
    yaw = np.arctan2(local_rot[:, 1, 0], local_rot[:, 0, 0])
    vel = np.zeros((n, 3))
    vel[:, :2] = np.asarray(velocity, np.float64).reshape(n, 2)
    vel_lidar = vel @ to_lidar.rotation.T
    size = np.asarray(size, np.float64).reshape(n, 3)
    return np.column_stack([centres, size[:, 1], size[:, 0], size[:, 2], yaw, vel_lidar[:, :2]])


def yaw_matrices(yaw: np.ndarray) -> np.ndarray:
    """Rotations about +z by ``yaw`` radians: float [...] -> float64 [..., 3, 3]."""
    c, s = np.cos(np.asarray(yaw, np.float64)), np.sin(np.asarray(yaw, np.float64))
    zeros, ones = np.zeros_like(c), np.ones_like(c)
    return np.stack([np.stack([c, -s, zeros], -1), np.stack([s, c, zeros], -1), np.stack([zeros, zeros, ones], -1)], -2)
