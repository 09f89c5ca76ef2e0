"""GaussianObject's distance-aware novel views: an elliptical rig through the training
cameras, view angles sampled in the gaps between them, and the distance weight of the
repair loss (reference/gaussianobject.md §7.1 and §7.2).

Frames: world points as in :class:`~sparse3d.geometry.cameras.Cameras`. The *aligned*
frame is the PCA frame of the training camera centres: origin at their centroid, x and y
the largest principal axes, z the smallest (the ellipse normal). The reference also scales
it into [-1, 1]^3; a uniform scale cancels when mapping back, so it is left out. Every rule
below is built from the cameras alone, so the rig moves with a similarity transform of
the world (rotation, translation, scale).
"""

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sparse3d.geometry.cameras import Cameras, camera_centers, look_at_viewmats

# Principal variances closer than this fraction of the largest count as equal: eigh then
# returns an arbitrary basis of their plane, so a geometric rule picks the axis instead.
# Float32 poses of a symmetric ring differ by ~1e-7 relative.
_TIE_TOL = 1e-4
# An eigenvalue of mean(I - d d^T) over the optical axes below this means (nearly)
# parallel axes: their least-squares nearest point is undefined or far off.
_PARALLEL_TOL = 1e-6
# A semi-axis below this fraction of the other makes the ellipse a segment (e.g. two
# cameras facing each other through the focus): angles on it are undefined.
_FLAT_TOL = 1e-5


@dataclass(frozen=True)
class NovelViewRig:
    """An axis-aligned ellipse in the aligned frame on which novel views look at the focus
    point (GaussianObject's ``RandomCameraSampler``, paper: https://arxiv.org/abs/2402.10259).

    - The ellipse lies in the aligned plane z = 0, the cameras' mean height
      (``z_variation`` = 0).
    - Its centre is the focus point projected onto that plane (the reference's
      ``generate_ellipse_path``); its semi-axes are the largest |x|, |y| of a training
      camera about that centre (the 100th percentile).
    - An angle θ is the ellipse parameter: aligned position (cx + a cos θ, cy + b sin θ, 0).

    Examples:
        >>> from sparse3d.geometry.cameras import intrinsics_from_fov
        >>> az = torch.arange(4) * math.pi / 2
        >>> eyes = torch.stack([4 * az.cos(), 4 * az.sin(), torch.ones(4)], -1)
        >>> K = intrinsics_from_fov(50.0, 64, 64)
        >>> train = Cameras(look_at_viewmats(eyes, torch.zeros(4, 3)), K.expand(4, 3, 3), 64, 64)
        >>> rig = novel_view_rig(train)
        >>> angles = sample_angles_between_views(rig, 8, torch.Generator().manual_seed(0))
        >>> novel = rig_cameras(rig, angles, 64, 64, K)  # 8 views between the 4 inputs
    """

    origin: Tensor
    """float64 [3] world centroid of the training camera centres (aligned origin)."""
    axes: Tensor
    """float64 [3, 3] rows: the aligned x, y, z axes as world unit vectors (right-handed);
    z points along the training cameras' mean up."""
    focus: Tensor
    """float64 [3] world point nearest (least squares) to all training optical axes."""
    center: Tensor
    """float64 [2] ellipse centre, aligned (x, y)."""
    semi_axes: Tensor
    """float64 [2] semi-axes (a, b) along aligned x and y, world units."""
    thetas: Tensor
    """float64 [T] each of the T training cameras' angle on the ellipse, in [-pi, pi], input order."""
    up: Tensor
    """float64 [3] world up of the generated views: the signed aligned axis closest to the
    training cameras' mean up (normally +z, the ellipse normal)."""

    def positions(self, angles: Tensor) -> Tensor:
        """World points on the ellipse: float64 [M, 3] for ``angles`` float [M] (radians)."""
        angles = angles.to(torch.float64)
        aligned = torch.stack([self.center[0] + self.semi_axes[0] * angles.cos(),
                               self.center[1] + self.semi_axes[1] * angles.sin(),
                               torch.zeros_like(angles)], -1)  # [M, 3]
        return self.origin + aligned @ self.axes


def novel_view_rig(cameras: Cameras) -> NovelViewRig:
    """Builds the ellipse rig of the training ``cameras`` (T >= 2 of them).

    Ties in the PCA are resolved from the cameras: with two equal largest variances (a
    symmetric ring) aligned x points at camera 0; with two equal smallest ones (collinear
    centres, e.g. T = 2) the normal is the mean up made orthogonal to the line. Otherwise
    x's sign puts camera 0 at x >= 0.

    Raises:
        ValueError: fewer than 2 cameras, (nearly) parallel optical axes, or cameras
            spanning no ellipse (a semi-axis ~0).
    """
    count = len(cameras)
    if count < 2:
        raise ValueError(f"novel_view_rig: needs at least 2 training cameras, got {count}")
    rots = cameras.viewmats[:, :3, :3].to(torch.float64)  # [T, 3, 3] rows: camera axes in world
    centers = camera_centers(cameras.viewmats.to(torch.float64))  # [T, 3]
    forwards, mean_up = rots[:, 2], torch.nn.functional.normalize(-rots[:, 1].sum(0), dim=0)  # OpenCV up = -y

    # Least squares over lines c + s d: sum_i (I - d_i d_i^T)(p - c_i) = 0.
    proj = torch.eye(3, dtype=torch.float64) - forwards[:, :, None] * forwards[:, None, :]  # [T, 3, 3]
    normal_mat = proj.mean(0)
    if torch.linalg.eigvalsh(normal_mat)[0] < _PARALLEL_TOL:
        raise ValueError("novel_view_rig: the training cameras' optical axes are (nearly) parallel; "
                         "they have no focus point")
    focus = torch.linalg.solve(normal_mat, (proj @ centers[:, :, None]).mean(0))[:, 0]

    origin = centers.mean(0)
    offsets = centers - origin  # [T, 3]
    var, vecs = torch.linalg.eigh(offsets.T @ offsets)  # ascending variances, columns
    tie = _TIE_TOL * var[2]
    normal = vecs[:, 0] if var[1] - var[0] > tie else mean_up - (mean_up @ vecs[:, 2]) * vecs[:, 2]
    normal = torch.nn.functional.normalize(normal, dim=0)
    normal = -normal if normal @ mean_up < 0 else normal
    x = vecs[:, 2] if var[2] - var[1] > tie else offsets[0] - (offsets[0] @ normal) * normal
    x = torch.nn.functional.normalize(x, dim=0)
    x = -x if offsets[0] @ x < 0 else x
    axes = torch.stack([x, torch.linalg.cross(normal, x), normal])  # [3, 3], right-handed

    center = ((focus - origin) @ axes.T)[:2]
    planar = offsets @ axes[:2].T - center  # [T, 2] camera (x, y) about the ellipse centre
    semi_axes = planar.abs().amax(0)
    if semi_axes.min() <= _FLAT_TOL * semi_axes.max():
        raise ValueError(f"novel_view_rig: the training cameras span no ellipse (semi-axes "
                         f"{semi_axes.tolist()}); add a camera off the line through the focus point")
    # The ellipse parameter, not the polar angle, so that positions(thetas) returns the
    # cameras that lie on the ellipse.
    thetas = torch.atan2(planar[:, 1] / semi_axes[1], planar[:, 0] / semi_axes[0])
    candidates = torch.cat([axes, -axes])  # [6, 3]
    up = candidates[(candidates @ mean_up).argmax()]
    return NovelViewRig(origin, axes, focus, center, semi_axes, thetas, up)


def sample_angles_between_views(rig: NovelViewRig, count: int, generator: torch.Generator,
                                spread: float = 0.8) -> Tensor:
    """Angles in the gaps between training views (the reference's ``sample_away_from_gt``).

    Sample k starts at training view k mod T in angle order, picks its previous or next
    neighbour on the ellipse at random, and jitters the mid-angle of their gap uniformly
    within +- ``spread`` x half the gap; with ``spread`` < 1 no sample lands on a view.

    Args:
        rig: from :func:`novel_view_rig`.
        count: M, the number of angles.
        generator: the only source of randomness (two draws of M numbers).
        spread: jitter range as a fraction of the half-gap, in [0, 1].

    Returns:
        float64 [M] angles in [0, 2 pi).
    """
    thetas = rig.thetas.sort().values  # [T]
    start = torch.arange(count) % len(thetas)
    step = torch.where(torch.rand(count, generator=generator, dtype=torch.float64) < 0.5, -1, 1)  # [M]
    # Signed gap from the start view to its neighbour, going the short way round in that
    # direction (remainder keeps the wrap-around gap between the last and first view).
    gap = step * torch.remainder(step * (thetas[(start + step) % len(thetas)] - thetas[start]), 2 * math.pi)
    jitter = 2 * torch.rand(count, generator=generator, dtype=torch.float64) - 1  # U(-1, 1)
    return torch.remainder(thetas[start] + 0.5 * gap * (1 + spread * jitter), 2 * math.pi)


def sample_angles_uniform(count: int, generator: torch.Generator) -> Tensor:
    """float64 [count] angles ~ U(0, 2 pi), the sampler after ``around_gt_steps``."""
    return 2 * math.pi * torch.rand(count, generator=generator, dtype=torch.float64)


def rig_cameras(rig: NovelViewRig, angles: Tensor, width: int, height: int, K: Tensor) -> Cameras:
    """Cameras on the rig's ellipse looking at its focus point, with the rig's up.

    Args:
        rig: from :func:`novel_view_rig`.
        angles: float [M] ellipse parameters (radians), e.g. from the samplers above.
        width, height: image size in pixels.
        K: float [3, 3] intrinsics shared by all M views (the reference uses the
            reference view's focal length).

    Returns:
        M cameras, float32 (``viewmats`` computed in float64).
    """
    if K.shape != (3, 3):
        raise ValueError(f"rig_cameras: K must be [3, 3], got {list(K.shape)}")
    eyes = rig.positions(angles)  # [M, 3]
    viewmats = look_at_viewmats(eyes, rig.focus.expand_as(eyes), up=tuple(rig.up.tolist()))
    return Cameras(viewmats, K.to(torch.float32).expand(len(eyes), 3, 3).clone(), width, height)


def distance_weights(novel_centers: Tensor, train_centers: Tensor) -> Tensor:
    """Repair-loss weights d_w = min(1, 2 dist(novel, nearest training camera) / D_max).

    D_max = 1.2 x the largest distance from a training camera to its 3rd-nearest training
    camera counting itself (index 2 of its sorted distances, self at index 0); with T = 2
    there is no index 2 and the other camera is used.

    Args:
        novel_centers: float [M, 3] world centres of the novel views.
        train_centers: float [T, 3] world centres of the training views, T >= 2, not all equal.

    Returns:
        [M] weights in [0, 1], the dtype of ``novel_centers`` (computed in float64): 0 on a
        training camera, 1 at D_max / 2 or farther.
    """
    train = train_centers.to(torch.float64)
    if len(train) < 2:
        raise ValueError(f"distance_weights: needs at least 2 training cameras, got {len(train)}")
    third = torch.cdist(train, train).sort(dim=1).values[:, min(2, len(train) - 1)]  # [T]
    d_max = 1.2 * third.max()
    if d_max == 0:
        raise ValueError("distance_weights: the training cameras coincide (D_max = 0)")
    nearest = torch.cdist(novel_centers.to(torch.float64), train).amin(1)  # [M]
    return (2 * nearest / d_max).clamp(max=1.0).to(novel_centers.dtype)
