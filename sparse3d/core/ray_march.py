"""Ray marching through occupied voxels: the sample points of a batch of rays that fall in
the occupied cells of a :class:`~sparse3d.core.grid.VoxelGrid`, so that nothing is sampled
in empty space.

Every ray is stepped uniformly, ``t_k = t_start + (k + jitter) * step`` for k = 0, 1, ...
while ``t_k < t_end``, and sample k is kept when the voxel holding
``origin + t_k * dir`` is occupied. The samples form a CSR list: ray r owns samples
``offsets[r]:offsets[r + 1]``, in increasing t. The native kernel walks each ray voxel by
voxel, a 3D-DDA over the steps themselves (the cell of every step is the float32 cell
computed here, even where rounding moves it off the exact ray), and looks each voxel up
once in the core's coordinate hash; it returns exactly what the dense reference
:func:`march_rays_ref` returns on the same device.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from sparse3d._native import HAS_NATIVE
from sparse3d.core.grid import VoxelGrid


@dataclass(frozen=True)
class RaySamples:
    """Samples along a batch of R rays, CSR by ray."""

    offsets: Tensor
    """int64 [R + 1] ray r owns samples ``offsets[r]:offsets[r + 1]``."""
    t: Tensor
    """float32 [S] distance of each sample along its ray (world units for unit directions)."""

    @property
    def ray_ids(self) -> Tensor:
        """int64 [S] the ray of each sample."""
        counts = self.offsets.diff()
        return torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)

    def points(self, origins: Tensor, dirs: Tensor) -> Tensor:
        """float32 [S, 3] world positions ``origin + t * dir`` of the samples."""
        ids = self.ray_ids
        return origins[ids] + self.t[:, None] * dirs[ids]


def ray_box(origins: Tensor, dirs: Tensor, lower: Tensor, upper: Tensor, near: float = 0.0) -> tuple[Tensor, Tensor]:
    """Where rays enter and leave an axis-aligned box (slab test), from ``near`` on.

    Args:
        origins, dirs: float32 [R, 3] rays, world frame (directions need not be unit).
        lower, upper: float [3] box corners.
        near: the smallest t to return.

    Returns:
        t_start, t_end: float32 [R]; a ray that misses the box has ``t_end <= t_start``.
    """
    inv = 1.0 / dirs  # +-inf along axes the ray does not move on
    t0 = (lower.to(origins) - origins) * inv
    t1 = (upper.to(origins) - origins) * inv
    # 0 * inf is nan where a ray runs inside a slab's face: such a slab does not limit it.
    t_min = torch.where(torch.isnan(t0), -torch.inf, torch.minimum(t0, t1)).amax(-1)
    t_max = torch.where(torch.isnan(t0), torch.inf, torch.maximum(t0, t1)).amin(-1)
    return t_min.clamp(min=near), t_max


def march_rays(
    origins: Tensor,
    dirs: Tensor,
    t_start: Tensor,
    t_end: Tensor,
    step: float,
    grid: VoxelGrid,
    occupied: Tensor,
    jitter: Tensor | None = None,
) -> RaySamples:
    """The uniform steps of each ray that fall in occupied voxels.

    Args:
        origins, dirs: float32 [R, 3] rays, world frame.
        t_start, t_end: float32 [R] the stretch of each ray to march (e.g. :func:`ray_box`).
        step: distance between samples, > 0.
        grid: the voxel grid.
        occupied: int64 [M] sorted unique keys (``grid.keys``) of the occupied voxels.
        jitter: float32 [R] offset of each ray's first step, in steps, in [0, 1) (random
            while training, so every depth gets sampled); None: 0.

    Returns:
        The samples, CSR by ray, in increasing t.
    """
    if jitter is None:
        jitter = torch.zeros_like(t_start)
    _check_march_args(origins, dirs, t_start, t_end, step, occupied, jitter)
    if HAS_NATIVE:
        offsets, t = torch.ops.sparse3d.march_rays(
            origins, dirs, t_start, t_end, jitter, occupied, list(grid.lower), grid.voxel_size, list(grid.shape), step
        )
        return RaySamples(offsets, t)
    return march_rays_ref(origins, dirs, t_start, t_end, step, grid, occupied, jitter)


def march_rays_ref(
    origins: Tensor,
    dirs: Tensor,
    t_start: Tensor,
    t_end: Tensor,
    step: float,
    grid: VoxelGrid,
    occupied: Tensor,
    jitter: Tensor,
) -> RaySamples:
    """Pure-torch reference of :func:`march_rays`: every step of every ray, then the
    occupied ones (memory R x the longest ray's steps)."""
    span = (t_end - t_start).clamp(min=0)
    steps = int((span / step).ceil().max()) + 1 if len(span) else 0
    k = torch.arange(steps, dtype=torch.float32, device=origins.device)
    t = (k[None, :] + jitter[:, None]) * step + t_start[:, None]  # [R, steps]
    points = origins[:, None, :] + t[..., None] * dirs[:, None, :]
    cells = grid.cells(points.reshape(-1, 3))
    keep = (t < t_end[:, None]) & (grid.lookup(occupied, cells) >= 0).reshape(t.shape)
    offsets = torch.zeros(len(t) + 1, dtype=torch.int64, device=origins.device)
    offsets[1:] = keep.sum(1).cumsum(0)
    return RaySamples(offsets, t[keep])


def _check_march_args(origins, dirs, t_start, t_end, step, occupied, jitter) -> None:
    r = origins.shape[0]
    for name, x, shape in (("origins", origins, (r, 3)), ("dirs", dirs, (r, 3)), ("t_start", t_start, (r,)),
                           ("t_end", t_end, (r,)), ("jitter", jitter, (r,))):
        if tuple(x.shape) != shape or x.dtype != torch.float32:
            raise ValueError(f"march_rays: {name} must be float32 {list(shape)}, got {x.dtype} {list(x.shape)}")
    if occupied.dim() != 1 or occupied.dtype != torch.int64:
        raise ValueError(f"march_rays: occupied must be int64 [M] keys, got {occupied.dtype} {list(occupied.shape)}")
    if not step > 0:
        raise ValueError(f"march_rays: step must be > 0, got {step}")


if HAS_NATIVE:

    @torch.library.register_fake("sparse3d::march_rays")
    def _(origins, dirs, t_start, t_end, jitter, occupied, lower, voxel_size, shape, step):
        ctx = torch.library.get_ctx()
        return origins.new_empty(origins.shape[0] + 1, dtype=torch.int64), origins.new_empty(ctx.new_dynamic_size())
