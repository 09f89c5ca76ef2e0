"""Rigid poses and oriented boxes in float64 numpy (the frames of LiDAR sweeps, ego poses
and nuScenes boxes)."""

from dataclasses import dataclass

import numpy as np

from sparse3d.geometry.rotations import rotmats_from_quats


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
        return Pose(rotmats_from_quats(np.asarray(quaternion, np.float64)), np.asarray(translation, np.float64))

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
