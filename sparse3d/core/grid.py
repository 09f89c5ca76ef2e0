"""An axis-aligned regular grid of cubic voxels in the world: where a voxel is, which voxel
holds a point, and the sorted keys of a set of occupied voxels.

The radiance fields place local tensors on the occupied voxels of such grids and sample
rays only in occupied cells; every native op that reads a grid computes centres and cells
with the same float32 expressions as these functions, so both agree bit for bit.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from sparse3d.core.coords import Triple, coord_keys, keys_to_coords


@dataclass(frozen=True)
class VoxelGrid:
    """Voxel (i, j, k) spans ``lower + [i, i + 1) * voxel_size`` along x (and so on)."""

    lower: tuple[float, float, float]
    """World-frame corner of voxel (0, 0, 0)."""
    voxel_size: float
    """Edge length of a voxel, world units."""
    shape: Triple
    """Voxels along x, y and z."""

    def __post_init__(self) -> None:
        if not self.voxel_size > 0 or min(self.shape) < 1:
            raise ValueError(f"VoxelGrid: need voxel_size > 0 and a positive shape, got {self.voxel_size}, {self.shape}")

    @classmethod
    def covering(cls, lower: Tensor, upper: Tensor, voxel_size: float) -> "VoxelGrid":
        """The grid from ``lower`` [3] with enough voxels of ``voxel_size`` to reach ``upper`` [3]."""
        shape = ((upper - lower) / voxel_size).ceil().clamp(min=1).long().tolist()
        return cls(tuple(float(v) for v in lower.tolist()), float(voxel_size), tuple(int(s) for s in shape))

    @property
    def upper(self) -> tuple[float, float, float]:
        """World-frame far corner of the last voxel."""
        return tuple(lo + s * self.voxel_size for lo, s in zip(self.lower, self.shape))

    def centers(self, coords: Tensor) -> Tensor:
        """float32 [N, 3] world-frame centres of voxels ``coords`` int [N, 3] (x, y, z)."""
        lower = torch.tensor(self.lower, dtype=torch.float32, device=coords.device)
        return (coords.float() + 0.5) * self.voxel_size + lower

    def cells(self, points: Tensor) -> Tensor:
        """int64 [N, 3] the voxel holding each point ``points`` float32 [N, 3] (may lie
        outside ``[0, shape)``): ``floor((p - lower) / voxel_size)``."""
        lower = torch.tensor(self.lower, dtype=torch.float32, device=points.device)
        return ((points - lower) / self.voxel_size).floor().long()

    def inside(self, cells: Tensor) -> Tensor:
        """bool [N] whether voxels ``cells`` int [N, 3] lie in the grid."""
        shape = torch.tensor(self.shape, device=cells.device)
        return ((cells >= 0) & (cells < shape)).all(-1)

    def keys(self, coords: Tensor) -> Tensor:
        """int64 [N] the core's linear keys (sparse3d.core.coords) of voxels ``coords``
        int [N, 3] inside the grid; sorting the keys sorts the voxels by (x, y, z)."""
        batch = torch.zeros(len(coords), 1, dtype=torch.int32, device=coords.device)
        return coord_keys(torch.cat([batch, coords.int()], 1), self.shape)

    def coords(self, keys: Tensor) -> Tensor:
        """int32 [N, 3] the voxels of linear ``keys`` int64 [N] (inverse of :meth:`keys`)."""
        return keys_to_coords(keys, self.shape)[:, 1:]

    def lookup(self, keys: Tensor, cells: Tensor) -> Tensor:
        """int64 [N] the position in ``keys`` (int64 [M], sorted, unique) of each voxel
        ``cells`` int [N, 3], or -1 where it lies outside the grid or is not in ``keys``."""
        inside = self.inside(cells)
        query = self.keys(cells.clamp(min=0).minimum(torch.tensor(self.shape, device=cells.device) - 1))
        pos = torch.searchsorted(keys, query).clamp(max=max(len(keys) - 1, 0))
        found = inside & (keys[pos] == query) if len(keys) else torch.zeros_like(inside)
        return torch.where(found, pos, -1)
