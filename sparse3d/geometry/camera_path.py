"""Smooth camera paths through keyframe poses (a viewer's camera path editor, fly-through
videos).

Positions follow a uniform Catmull-Rom spline through the keyframes' centres, so the path
passes through every keyframe with a continuous velocity; orientations follow the same
spline on the keyframes' quaternions (each flipped to the hemisphere of the previous one),
renormalised, which is smooth as well and exact at the keyframes. The ends repeat the
first and last keyframe, so a path of two keyframes is a straight line at an eased speed.
"""

import torch
from torch import Tensor

from sparse3d.geometry.rotations import quats_from_rotmats, rotmats_from_quats


def interpolate_poses(c2w: Tensor, frames: int) -> Tensor:
    """``frames`` camera-to-world poses along the path through the keyframes ``c2w``.

    Args:
        c2w: float [K, 4, 4] rigid keyframe poses (camera to world, OpenCV axes), K >= 1.
        frames: N >= 1 poses out, at equal steps of the spline parameter from the first
            keyframe to the last (both included when N >= 2).

    Returns:
        float64 [N, 4, 4]; frame ``round(k (N - 1) / (K - 1))`` is keyframe k when that
        lands exactly on it.

    Raises:
        ValueError: no keyframe, or ``frames`` < 1.
    """
    if len(c2w) == 0 or frames < 1:
        raise ValueError(f"interpolate_poses: need at least one keyframe and one frame, got {len(c2w)} and {frames}")
    c2w = c2w.double()
    quats = quats_from_rotmats(c2w[:, :3, :3])
    for k in range(1, len(quats)):  # q and -q are one rotation: take the one nearest the previous
        if float(quats[k] @ quats[k - 1]) < 0:
            quats[k] = -quats[k]
    keys = torch.cat([c2w[:, :3, 3], quats], dim=1)  # [K, 7]
    if len(keys) == 1:
        values = keys.expand(frames, 7)
    else:
        t = torch.linspace(0, len(keys) - 1, frames, dtype=torch.float64) if frames > 1 else torch.zeros(1, dtype=torch.float64)
        values = catmull_rom(keys, t)
    poses = torch.eye(4, dtype=torch.float64).repeat(frames, 1, 1)
    poses[:, :3, :3] = rotmats_from_quats(values[:, 3:] / values[:, 3:].norm(dim=1, keepdim=True))
    poses[:, :3, 3] = values[:, :3]
    return poses


def catmull_rom(points: Tensor, t: Tensor) -> Tensor:
    """The uniform Catmull-Rom spline through ``points`` (float [K, D], K >= 2) at
    parameters ``t`` (float [N] in [0, K - 1]; point k at t = k), with the end points
    repeated as the outer control points: float [N, D]."""
    padded = torch.cat([points[:1], points, points[-1:]])
    segment = t.floor().long().clamp(0, len(points) - 2)
    u = (t - segment)[:, None]
    p0, p1, p2, p3 = (padded[segment + i] for i in range(4))
    return 0.5 * (2 * p1 + (p2 - p0) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u ** 2 + (3 * p1 - p0 - 3 * p2 + p3) * u ** 3)
