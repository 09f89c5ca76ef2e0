"""The visual hull of GaussianObject (Yang et al. 2024): voxel carving from object masks.

A voxel belongs to the hull when, in at least ``agree`` of the V views, its centre lies in
front of the camera (z > 0) and projects onto a set pixel of that view's mask. The mask is
sampled at the pixel containing the projected centre (nearest pixel; pixel (u, v) covers
[u, u + 1) x [v, v + 1)); a centre projecting outside the image is outside that mask, as
with the zero padding of the reference's ``grid_sample``.

Bounds come from the cameras, not from GaussianObject's fixed +-4 cube, which returns no
points for scenes at other scales or positions: :func:`search_cube` centres a cube on the
point nearest to all optical axes (the point the views look at), with the largest camera
distance to that point as its half-size. An object-centric capture surrounds its object,
so the object lies nearer to that focus than the cameras do; the cube holds the whole ball
through the farthest camera. Only parts of the hull farther out than every camera (a few
silhouette cones may meet there) are not searched.

Carving runs coarse to fine on a sparse voxel set: a ``coarse_resolution``^3 grid over the
search cube, then an octree (each survivor splits into 8) until the survivors span at
least ``resolution / 2`` voxels along their longest side and their box has settled. A voxel
survives a level when, in ``agree`` views, some point of its bounding sphere can lie in
front of the camera and project onto a set mask pixel (a pixel window bounding the
sphere's projection, counted in a summed-area table of the mask), so no centre of the
final hull is lost. The final grid spans the survivors' box with ``resolution`` voxels
along its longest side; its voxels whose centre lies in a survivor take the exact test, so
the result equals dense carving of the search cube on that grid. Index arithmetic is
integer and projections float64: the hull is deterministic and follows similarity
transforms of the scene exactly.
"""

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from sparse3d.engine.config import at_least, check_ranges
from sparse3d.geometry.cameras import Cameras, camera_centers

# View-point pairs per chunk of the projection tests: each float64 temporary of a chunk is
# 16 MB, and about 20 are alive at once.
_CHUNK = 1 << 21
# [8, 3] offsets in {0, 1}^3: of a voxel's octree children, and of the up to 2^3 final
# voxels whose centres a last-level voxel holds.
_CHILDREN = torch.cartesian_prod(*[torch.arange(2)] * 3)
# Smallest eigenvalue of sum_v (I - d_v d_v^T) per view below which the optical axes d_v
# are too close to parallel to meet (about 0.1 degree apart for two views).
_MIN_AXIS_SPREAD = 1e-6
# Octree levels below the coarse grid before a hull is declared degenerate.
_MAX_LEVELS = 20
# Conservative tests widen their pixel windows and depth range by this much, so that
# float64 rounding never drops a voxel whose exact test a centre inside it would pass.
_SLACK = 1e-6


@dataclass
class HullConfig:
    """How the visual hull is carved."""

    resolution: int = field(default=64, metadata=at_least(1))
    """Voxels along the longest side of the hull's bounding box (sets the voxel size)."""
    coarse_resolution: int = field(default=32, metadata=at_least(2))
    """Voxels along each side of the search cube in the first, coarse pass."""
    agree: int | None = field(default=None, metadata=at_least(1))
    """Views whose mask must contain a voxel centre; None: V - 1 (one view may disagree,
    as in GaussianObject), but all views when V = 2."""

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True)
class VisualHull:
    """The kept voxels of a visual hull, on a regular grid of ``shape`` voxels."""

    points: Tensor
    """float32 [P, 3] world-frame voxel centres, ``origin + (coords + 0.5) * voxel_size``."""
    colors: Tensor
    """uint8 [P, 3] mean RGB over the views in whose image a centre lies (128 without images)."""
    coords: Tensor
    """int32 [P, 3] voxel indices (x, y, z), sorted lexicographically, in ``[0, shape)``."""
    origin: Tensor
    """float64 [3] world-frame corner of voxel (0, 0, 0): the grid's lowest corner."""
    voxel_size: float
    """Edge length of a voxel in world units."""
    shape: tuple[int, int, int]
    """Voxels along x, y, z; the longest is ``HullConfig.resolution``."""


def visual_hull(cameras: Cameras, masks: Tensor, images: Tensor | None, config: HullConfig) -> VisualHull:
    """Carves the visual hull of V >= 2 masked views.

    Args:
        cameras: V cameras of W x H pixels.
        masks: bool [V, H, W] object masks, or uint8 set where >= 128.
        images: float [V, H, W, 3] RGB in [0, 1], or uint8 [V, H, W, 3]; None colours the
            points grey.
        config: resolutions and the number of views that must agree.

    Returns:
        The hull's voxels; see the module docstring for the test and the bounds.

    Raises:
        ValueError: on masks or images of the wrong type or size, fewer than 2 views, a view
            with an empty mask, optical axes that do not meet, or an empty hull (naming the
            share of candidates that each view's mask keeps).
    """
    masks, agree = _check_inputs(cameras, masks, images, config)
    device = cameras.viewmats.device
    views = _views(cameras, masks)
    center, half = search_cube(cameras)
    corner, size = center - half, 2 * half / config.coarse_resolution
    coords = torch.cartesian_prod(*[torch.arange(config.coarse_resolution, device=device)] * 3)  # [N, 3]
    res, n_prev = config.resolution, math.inf
    for level in range(_MAX_LEVELS):
        radius = size * 3**0.5 / 2  # bounding sphere of a voxel
        coords = coords[_carve(views, corner + (coords + 0.5) * size, radius, agree, f"coarse level {level}")]
        lo, hi = coords.amin(0), coords.amax(0) + 1
        n = int((hi - lo).max())  # survivors' extent in voxels of this level
        # Stop at voxels of at most 2 final voxels once the survivors' box, loose by about the
        # voxels' projected size, has settled: shrunk by under 10 % at this level, and not
        # merely clipped by the search cube (then settle only from 2 final voxels per voxel).
        clipped = n == config.coarse_resolution << level
        if 2 * n >= res and 5 * n > 9 * n_prev and (n >= 2 * res or not clipped):
            break
        coords, size, n_prev = (coords[:, None] * 2 + _CHILDREN.to(device)).reshape(-1, 3), size / 2, n
    else:
        raise ValueError(
            f"visual_hull: the masks agree only on a region below 1/{config.coarse_resolution << _MAX_LEVELS} of "
            "the search cube: a degenerate hull (masks of a point, or cones that barely touch)"
        )

    # The final grid has `res` voxels along the n of this level, so level voxel c holds the
    # centres of grid voxels k with c <= (k + 1/2) n / res < c + 1 along each axis: k from
    # ceil((2 c res - n) / 2n) to ceil((2 (c + 1) res - n) / 2n) - 1, at most 2 as 2 n >= res.
    def first_centre(c: Tensor) -> Tensor:
        return -((n - 2 * c * res) // (2 * n))

    nx, ny, nz = first_centre(hi - lo).tolist()
    shape = (nx, ny, nz)
    first, last = first_centre(coords - lo), first_centre(coords - lo + 1) - 1
    occupied = torch.zeros(shape, dtype=torch.bool, device=device)
    for offset in _CHILDREN.to(device):
        cells = first + offset
        occupied[tuple(cells[(cells <= last).all(1)].T)] = True
    candidates = occupied.nonzero()  # [M, 3], lexicographic order
    origin, voxel_size = corner + lo * size, n * size / res
    centres = origin + (candidates + 0.5) * voxel_size
    keep = _carve(views, centres, 0.0, agree, "final level")
    centres = centres[keep]
    return VisualHull(
        points=centres.float(),
        colors=_colors(views, images, centres),
        coords=candidates[keep].int(),
        origin=origin,
        voxel_size=voxel_size,
        shape=shape,
    )


def search_cube(cameras: Cameras) -> tuple[Tensor, float]:
    """The cube searched for the hull: centred on the least-squares point nearest to every
    optical axis (camera centre + t * viewing direction, the camera's +z), with the largest
    camera distance to it as the half-size.

    Returns:
        (float64 [3] world-frame centre, half-size in world units).

    Raises:
        ValueError: when the optical axes are (nearly) parallel, so no point is nearest.
    """
    viewmats = cameras.viewmats.double()
    dirs = viewmats[:, 2, :3]  # [V, 3]: the rows of R are the camera axes in the world frame
    centers = camera_centers(viewmats)  # [V, 3]
    eye = torch.eye(3, dtype=torch.float64, device=dirs.device)
    proj = eye - dirs[:, :, None] * dirs[:, None, :]  # [V, 3, 3] projections across each axis
    normal = proj.sum(0)
    if torch.linalg.eigvalsh(normal)[0] < _MIN_AXIS_SPREAD * len(cameras):
        raise ValueError(
            "visual_hull: the optical axes of the views are (nearly) parallel; the hull needs views looking at "
            "the object from different directions"
        )
    focus = torch.linalg.solve(normal, (proj @ centers[..., None]).sum(0))[:, 0]
    return focus, float((centers - focus).norm(dim=1).max())


def _check_inputs(cameras: Cameras, masks: Tensor, images: Tensor | None, config: HullConfig) -> tuple[Tensor, int]:
    """Validates the arguments of :func:`visual_hull`.

    Returns:
        (bool [V, H, W] masks on the cameras' device, the number of views that must agree).
    """
    V, H, W = len(cameras), cameras.height, cameras.width
    if V < 2:
        raise ValueError(f"visual_hull needs at least 2 views, got {V}")
    if not isinstance(masks, Tensor) or masks.dtype not in (torch.bool, torch.uint8):
        got = masks.dtype if isinstance(masks, Tensor) else type(masks).__name__
        raise ValueError(f"visual_hull: masks must be a bool or uint8 tensor [V, H, W], got {got}")
    if tuple(masks.shape) != (V, H, W):
        raise ValueError(
            f"visual_hull: masks must be [V, H, W] = {[V, H, W]} to match the {V} cameras of {W} x {H} pixels, "
            f"got {list(masks.shape)}"
        )
    if images is not None and (
        tuple(images.shape) != (V, H, W, 3) or not (images.dtype == torch.uint8 or images.is_floating_point())
    ):
        raise ValueError(
            f"visual_hull: images must be uint8 or float [V, H, W, 3] = {[V, H, W, 3]}, "
            f"got {images.dtype} {list(images.shape)}"
        )
    binary = (masks if masks.dtype == torch.bool else masks >= 128).to(cameras.viewmats.device)
    empty = (~binary.flatten(1).any(1)).nonzero()[:, 0].tolist()
    if empty:
        hint = "; uint8 masks are set where >= 128" if masks.dtype == torch.uint8 else ""
        raise ValueError(f"visual_hull: the mask of view {', '.join(map(str, empty))} is empty (no pixel set{hint})")
    agree = config.agree if config.agree is not None else max(V - 1, 2)
    if agree > V:
        raise ValueError(f"visual_hull: HullConfig.agree = {agree} exceeds the number of views, {V}")
    return binary, agree


class _Views(NamedTuple):
    """What the projection tests need of the V views."""

    viewmats: Tensor  # float64 [V, 4, 4]
    Ks: Tensor  # float64 [V, 3, 3]
    sat: Tensor  # int32 [V, (H + 1) (W + 1)] mask summed-area tables, row-major, a zero row and column first
    height: int
    width: int


def _views(cameras: Cameras, masks: Tensor) -> _Views:
    """The :class:`_Views` of ``cameras`` and their bool [V, H, W] ``masks``."""
    sat = F.pad(masks.int().cumsum(1).cumsum(2), (1, 0, 1, 0)).flatten(1)
    return _Views(cameras.viewmats.double(), cameras.Ks.double(), sat, cameras.height, cameras.width)


def _carve(views: _Views, centres: Tensor, radius: float, agree: int, stage: str) -> Tensor:
    """bool [N]: which balls of ``radius`` around ``centres`` [N, 3] pass the mask test of
    :func:`_hits` in >= ``agree`` views; raises the empty-hull error when none does."""
    V = len(views.viewmats)
    keep, counts = [], torch.zeros(V, dtype=torch.long, device=centres.device)
    for chunk in centres.split(max(1, _CHUNK // V)):
        hits = _hits(views, chunk, radius)
        counts += hits.sum(1)
        keep.append(hits.sum(0) >= agree)
    keep = torch.cat(keep)
    if not keep.any():
        shares = ", ".join(f"view {v}: {100 * float(c) / max(len(centres), 1):.1f}%" for v, c in enumerate(counts))
        raise ValueError(
            f"visual_hull: the hull is empty: no point lies inside the masks of >= {agree} of the {V} views "
            f"({stage}, {len(centres)} candidates). The masks do not agree: likely a wrong mask, or poses whose "
            f"scale, position or convention do not match the masks. Share of the candidates inside each view's "
            f"mask: {shares}; a view far below the others is the one that disagrees"
            + ("; or HullConfig.resolution is too low for a voxel centre to land inside." if radius == 0 else ".")
        )
    return keep


def _hits(views: _Views, points: Tensor, radius: float) -> Tensor:
    """bool [V, N]: whether some point within ``radius`` of ``points`` [N, 3] (radius 0:
    the point itself) can lie in front of camera v and project onto a set pixel of its mask.

    For a ball around camera-frame (x, y, z) with z > radius, every point projects within
    fx * radius * hypot(x, z) / (z (z - radius)) pixels of u = fx x / z + cx (likewise v);
    a ball reaching behind the image plane passes when any of it is in front.
    """
    viewmats, Ks, sat, H, W = views
    x, y, z = (points[None] @ viewmats[:, :3, :3].transpose(1, 2) + viewmats[:, None, :3, 3]).unbind(-1)  # [V, N]
    slack = _SLACK if radius > 0 else 0.0
    front = z > radius
    zf = torch.where(front, z, 2 * radius + 1)  # keeps the denominators positive off the front
    grow = radius / (zf * (zf - radius))
    fx, fy, cx, cy = (Ks[:, i, j, None] for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))
    u, ru = fx * x / zf + cx, fx * grow * torch.hypot(x, zf) + slack
    v, rv = fy * y / zf + cy, fy * grow * torch.hypot(y, zf) + slack
    # Pixel windows [u0, u1) x [v0, v1) clipped to the image; empty when off the image.
    u0, u1 = (u - ru).floor().clamp(0, W).long(), (u + ru).floor().add(1).clamp(0, W).long()
    v0, v1 = (v - rv).floor().clamp(0, H).long(), (v + rv).floor().add(1).clamp(0, H).long()

    def at(row: Tensor, col: Tensor) -> Tensor:
        return sat.gather(1, row * (W + 1) + col)

    count = at(v1, u1) - at(v0, u1) - at(v1, u0) + at(v0, u0)
    return (front & (count > 0)) | (~front & (z > -radius - slack))


def _colors(views: _Views, images: Tensor | None, points: Tensor) -> Tensor:
    """uint8 [P, 3]: mean RGB of ``images`` at the nearest pixel of ``points`` [P, 3] over
    the views where they lie in front and inside the image; 128 when ``images`` is None."""
    if images is None:
        return torch.full((len(points), 3), 128, dtype=torch.uint8, device=points.device)
    viewmats, Ks, _, H, W = views
    flat = (images.to(points.device, torch.float32) * (1 if images.dtype == torch.uint8 else 255)).flatten(1, 2)
    out = []
    for chunk in points.split(max(1, _CHUNK // len(viewmats))):
        cam = chunk[None] @ viewmats[:, :3, :3].transpose(1, 2) + viewmats[:, None, :3, 3]  # [V, n, 3]
        uv = (cam @ Ks.transpose(1, 2))[..., :2] / cam[..., 2:].clamp_min(1e-300)
        u, v = uv.floor().clamp(-1, max(W, H)).long().unbind(-1)
        seen = (cam[..., 2] > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)  # [V, n]
        rgb = flat.gather(1, (v * W + u).where(seen, 0)[..., None].expand(-1, -1, 3))  # [V, n, 3]
        out.append((rgb * seen[..., None]).sum(0) / seen.sum(0).clamp_min(1)[:, None])  # every hull point is seen
    return torch.cat(out).round().clamp(0, 255).to(torch.uint8)
