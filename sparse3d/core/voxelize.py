"""Voxelization of point clouds: points -> voxel sites, per-voxel reduced features and the
point-to-voxel map.

Each point with ``lower <= p < upper`` falls in cell ``floor((p - lower) / voxel_size)``
(computed in the points' precision). Voxels are sorted by (batch, x, y, z); inside a voxel
points keep their input order, and with ``max_points_per_voxel > 0`` only the first that
many contribute (hard voxelization, as spconv's PointToVoxel); 0 keeps every point
(dynamic voxelization). Features are reduced by mean, max or first with the deterministic
segment reductions of :mod:`sparse3d.core.segment`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from sparse3d._native import HAS_NATIVE
from sparse3d.core.coords import Triple, coord_keys, keys_to_coords
from sparse3d.core.segment import segment_reduce
from sparse3d.core.sparse_voxels import SparseVoxels

VoxelReduce = Literal["mean", "max", "first"]


def voxel_grid_shape(pc_range: Sequence[float], voxel_size: Sequence[float]) -> Triple:
    """Cells per axis (X, Y, Z) of the range [x0, y0, z0, x1, y1, z1] at ``voxel_size``."""
    if len(pc_range) != 6 or len(voxel_size) != 3:
        raise ValueError(f"pc_range must have 6 and voxel_size 3 entries, got {list(pc_range)} and {list(voxel_size)}")
    shape = tuple(round((pc_range[d + 3] - pc_range[d]) / voxel_size[d]) for d in range(3))
    if min(voxel_size) <= 0 or min(shape) < 1:
        raise ValueError(f"pc_range {list(pc_range)} and voxel_size {list(voxel_size)} give an empty grid {shape}")
    return shape  # type: ignore[return-value]


@dataclass
class Voxelization:
    """Result of :func:`voxelize`."""

    coords: Tensor
    """int32 [V, 4] (batch, x, y, z) occupied voxels, sorted."""
    feats: Tensor
    """float [V, D] reduced point features (differentiable w.r.t. the points)."""
    num_points: Tensor
    """int64 [V] points that contributed to each voxel (<= max_points_per_voxel if set)."""
    point_to_voxel: Tensor
    """int32 [P] voxel row of every point (also of points beyond the cap); -1 outside the grid."""
    grid_shape: Triple
    """(X, Y, Z) cells."""

    def to_voxels(self, batch_size: int) -> SparseVoxels:
        """The voxels as SparseVoxels on ``grid_shape``."""
        return SparseVoxels(self.coords, self.feats, self.grid_shape, batch_size, check=False)


def voxelize(
    points: Tensor,
    pc_range: Sequence[float],
    voxel_size: Sequence[float],
    reduce: VoxelReduce = "mean",
    max_points_per_voxel: int = 0,
    batch: Tensor | None = None,
) -> Voxelization:
    """Voxelizes a (batched) point cloud.

    Args:
        points: float [P, D], columns x, y, z (metres) then any features.
        pc_range: [x0, y0, z0, x1, y1, z1], metres.
        voxel_size: [vx, vy, vz], metres.
        reduce: "mean", "max" or "first" (the first point in input order).
        max_points_per_voxel: keep the first this many points of a voxel; 0 keeps all.
        batch: int32 [P] sample index of each point (>= 0), or None for one sample.

    Returns:
        A :class:`Voxelization`.
    """
    lower, grid, batch = _check_voxelize_args(points, pc_range, voxel_size, reduce, max_points_per_voxel, batch)
    args = (points, batch, lower, [float(v) for v in voxel_size], list(grid), int(max_points_per_voxel))
    if HAS_NATIVE:
        coords, point_to_voxel, order, offsets = torch.ops.sparse3d.voxelize(*args)
    else:
        coords, point_to_voxel, order, offsets = voxelize_index_ref(*args)
    return Voxelization(coords, _reduce_points(points, order, offsets, reduce), offsets.diff(), point_to_voxel, grid)


def voxelize_index_ref(points, batch, lower, voxel_size, grid, max_points):
    """Pure-torch reference of the ``sparse3d::voxelize`` op.

    Returns:
        coords int32 [V, 4]; point_to_voxel int32 [P]; order int64 [K] kept point rows
        grouped by voxel (input order inside a voxel); offsets int64 [V + 1] into order.
    """
    dtype, device = points.dtype, points.device
    cell = ((points[:, :3] - torch.tensor(lower, dtype=dtype, device=device)) / torch.tensor(voxel_size, dtype=dtype, device=device)).floor()
    inside = ((cell >= 0) & (cell < torch.tensor(grid, dtype=dtype, device=device))).all(1) & (batch >= 0)
    coords = torch.cat([batch[:, None].long(), torch.where(inside[:, None], cell, 0).long()], 1)
    keys = torch.where(inside, coord_keys(coords, grid), -1)
    unique, inverse = torch.unique(keys, return_inverse=True)
    if unique.numel() and unique[0] == -1:
        unique, inverse = unique[1:], inverse - 1
    group = torch.where(inside, inverse, -1)
    sorted_group, rows = torch.sort(group, stable=True)
    rows, sorted_group = rows[sorted_group >= 0], sorted_group[sorted_group >= 0]
    counts = torch.bincount(sorted_group, minlength=unique.numel())
    rank = torch.arange(rows.numel(), device=device) - (counts.cumsum(0) - counts)[sorted_group]
    cap = max_points if max_points > 0 else points.shape[0]
    offsets = torch.cat([counts.new_zeros(1), counts.clamp(max=cap).cumsum(0)])
    return keys_to_coords(unique, grid), group.int(), rows[rank < cap], offsets


def _reduce_points(points: Tensor, order: Tensor, offsets: Tensor, reduce: str) -> Tensor:
    if reduce == "first":
        return points[order[offsets[:-1]]]
    return segment_reduce(points[order], offsets, reduce)


def _check_voxelize_args(points, pc_range, voxel_size, reduce, max_points, batch):
    if not isinstance(points, Tensor) or points.dim() != 2 or points.shape[1] < 3 or not points.is_floating_point():
        shape = list(points.shape) if isinstance(points, Tensor) else type(points).__name__
        raise ValueError(f"voxelize: points must be a float [P, D >= 3] tensor (x, y, z first), got {shape}")
    if reduce not in ("mean", "max", "first"):
        raise ValueError(f"voxelize: reduce must be 'mean', 'max' or 'first', got {reduce!r}")
    if max_points < 0:
        raise ValueError(f"voxelize: max_points_per_voxel must be >= 0 (0 = no cap), got {max_points}")
    grid = voxel_grid_shape(pc_range, voxel_size)
    if batch is None:
        batch = torch.zeros(points.shape[0], dtype=torch.int32, device=points.device)
    elif batch.dtype != torch.int32 or batch.shape != (points.shape[0],):
        raise ValueError(f"voxelize: batch must be int32 [{points.shape[0]}], got {batch.dtype} {list(batch.shape)}")
    elif batch.numel() and int(batch.min()) < 0:
        raise ValueError(f"voxelize: batch indices must be >= 0, got min {int(batch.min())}")
    return [float(v) for v in pc_range[:3]], grid, batch


if HAS_NATIVE:

    @torch.library.register_fake("sparse3d::voxelize")
    def _(points, batch, lower, voxel_size, grid, max_points):
        ctx = torch.library.get_ctx()
        n_voxels, n_kept = ctx.new_dynamic_size(), ctx.new_dynamic_size()
        int_rows = batch.new_empty(points.shape[0])
        return (batch.new_empty(n_voxels, 4), int_rows, batch.new_empty(n_kept, dtype=torch.int64),
                batch.new_empty(n_voxels + 1, dtype=torch.int64))
