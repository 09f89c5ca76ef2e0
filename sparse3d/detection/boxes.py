"""3D boxes of detection: LiDAR <-> nuScenes global conversion (poses, headings and
point-in-box tests are in :mod:`sparse3d.geometry`).

Two box conventions meet here (DESIGN.md, "Boxes"):

- **LiDAR frame** (what detectors predict): float [N, 7] ``(x, y, z, dx, dy, dz, yaw)``,
  ``dx`` along the heading, optionally ``(vx, vy)`` appended for [N, 9];
- **nuScenes global frame** (what a submission holds): ``translation`` [N, 3], ``size``
  [N, 3] as (w, l, h) = (dy, dx, dz), ``rotation`` [N, 4] quaternion (w, x, y, z) and
  ``velocity`` [N, 2].

All maths is float64 numpy: the nuScenes evaluation is defined in float64.
"""

import numpy as np

from sparse3d.geometry.poses import Pose
from sparse3d.geometry.rotations import (
    quats_from_rotmats,
    rotmats_from_quats,
    yaw_matrices,
)


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
        "rotation": quats_from_rotmats(rotation),
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
    local_rot = to_lidar.rotation @ rotmats_from_quats(np.asarray(rotation, np.float64).reshape(n, 4))
    yaw = np.arctan2(local_rot[:, 1, 0], local_rot[:, 0, 0])
    vel = np.zeros((n, 3))
    vel[:, :2] = np.asarray(velocity, np.float64).reshape(n, 2)
    vel_lidar = vel @ to_lidar.rotation.T
    size = np.asarray(size, np.float64).reshape(n, 3)
    return np.column_stack([centres, size[:, 1], size[:, 0], size[:, 2], yaw, vel_lidar[:, :2]])


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """The 8 corners of each box, in its own frame.

    Args:
        boxes: float [N, 7+] (x, y, z, dx, dy, dz, yaw), ``z`` at the box centre.

    Returns:
        float64 [N, 8, 3]; corner ``4 i + 2 j + k`` lies at ``-`` (0) or ``+`` (1) half the
        size along the box's heading (i), its left (j) and up (k), so corners 4-7 make the
        front face.
    """
    boxes = np.atleast_2d(np.asarray(boxes, np.float64))
    signs = np.array([[i, j, k] for i in (-0.5, 0.5) for j in (-0.5, 0.5) for k in (-0.5, 0.5)])
    local = signs[None] * boxes[:, None, 3:6]  # [N, 8, 3]
    return np.einsum("nij,nkj->nki", yaw_matrices(boxes[:, 6]), local) + boxes[:, None, :3]
