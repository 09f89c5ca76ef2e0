"""Where a radiance field samples its rays: the occupied cells of a voxel grid.

A field starts from the cells its representation covers (Strivec: the cells that meet a
local tensor's box; the dense baselines: every cell of the scene box) and narrows them to
the cells where its density is visible (TensoRF's alpha mask, rebuilt on a schedule).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from sparse3d.core.grid import VoxelGrid
from sparse3d.core.ray_march import RaySamples, march_rays, ray_box


@dataclass(frozen=True)
class Occupancy:
    """The occupied cells of a grid: rays are sampled in these only."""

    grid: VoxelGrid
    """The cells."""
    keys: Tensor
    """int64 [M] sorted unique keys (``grid.keys``) of the occupied cells."""

    def march(self, origins: Tensor, dirs: Tensor, step: float, near: float, jitter: Tensor | None = None) -> RaySamples:
        """Samples of rays ``origins``, ``dirs`` float32 [R, 3] every ``step`` from ``near``
        (``jitter`` float32 [R] in [0, 1): each ray's offset, in steps) in the occupied cells."""
        lower = torch.tensor(self.grid.lower, device=origins.device)
        upper = torch.tensor(self.grid.upper, device=origins.device)
        t_start, t_end = ray_box(origins, dirs, lower, upper, near)
        return march_rays(origins, dirs, t_start, t_end, step, self.grid, self.keys, jitter)

    def centers(self) -> Tensor:
        """float32 [M, 3] world-frame centres of the occupied cells."""
        return self.grid.centers(self.grid.coords(self.keys))

    def bounds(self) -> tuple[Tensor, Tensor]:
        """float32 [3] lower and [3] upper corner of the box round the occupied cells
        (at least one)."""
        centers, half = self.centers(), self.grid.voxel_size / 2
        return centers.amin(0) - half, centers.amax(0) + half


def full_occupancy(grid: VoxelGrid, device: torch.device | str = "cpu") -> Occupancy:
    """Every cell of ``grid`` occupied."""
    return Occupancy(grid, torch.arange(grid.shape[0] * grid.shape[1] * grid.shape[2], device=device))


def box_occupancy(grid: VoxelGrid, centers: Tensor, half_size: float) -> Occupancy:
    """The cells of ``grid`` that meet any of the cubes of half-size ``half_size`` centred
    on ``centers`` float32 [N, 3]."""
    keys = cube_cells(grid, centers, half_size)
    return Occupancy(grid, keys[keys >= 0].unique())


def cubes_meeting(occupancy: Occupancy, centers: Tensor, half_size: float) -> Tensor:
    """bool [N] which of the cubes of half-size ``half_size`` centred on ``centers``
    float32 [N, 3] meet an occupied cell (the others hold no point that is sampled)."""
    keys = cube_cells(occupancy.grid, centers, half_size)
    return (torch.isin(keys, occupancy.keys) & (keys >= 0)).any(1)


def cube_cells(grid: VoxelGrid, centers: Tensor, half_size: float) -> Tensor:
    """int64 [N, C] the keys of the cells of ``grid`` that each closed cube of half-size
    ``half_size`` centred on ``centers`` float32 [N, 3] meets, padded with -1 (C: the most
    cells a cube meets)."""
    lower = torch.tensor(grid.lower, dtype=torch.float32, device=centers.device)
    first = ((centers - half_size - lower) / grid.voxel_size).floor().long()
    last = ((centers + half_size - lower) / grid.voxel_size).floor().long()
    span = int((last - first).max()) + 1 if len(centers) else 0
    steps = torch.arange(span, device=centers.device)
    offsets = torch.stack(torch.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 3)
    cells = first[:, None, :] + offsets[None]  # [N, C, 3]
    real = (cells <= last[:, None, :]).all(-1) & grid.inside(cells)
    keys = torch.full(real.shape, -1, dtype=torch.int64, device=centers.device)
    keys[real] = grid.keys(cells[real])
    return keys


def visible_occupancy(
    occupancy: Occupancy, sigma: Callable[[Tensor], Tensor], step: float, threshold: float, chunk: int = 65536
) -> Occupancy:
    """The occupied cells where the field is visible (TensoRF's alpha mask).

    A cell stays when the opacity ``1 - exp(-sigma step)`` at any of 8 points inside it (a
    2 x 2 x 2 lattice at its quarter points) exceeds ``threshold``, or at a kept cell next
    to it: the one-cell dilation keeps surfaces that pass between the test points.

    Args:
        occupancy: the cells now sampled.
        sigma: maps float32 [P, 3] world points to densities float [P].
        step: the sampling step the opacity is computed for.
        threshold: smallest opacity that counts as visible.
    """
    grid, keys = occupancy.grid, occupancy.keys
    quarter = torch.tensor([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], dtype=torch.float32)
    offsets = quarter.to(keys.device) * (grid.voxel_size / 4)
    centers = occupancy.centers()
    visible = torch.zeros(len(keys), dtype=torch.bool, device=keys.device)
    for start in range(0, len(keys), chunk):
        points = (centers[start : start + chunk, None, :] + offsets).reshape(-1, 3)
        alpha = 1 - torch.exp(-sigma(points) * step)
        visible[start : start + chunk] = (alpha.reshape(-1, 8) > threshold).any(1)
    return dilated(occupancy, visible)


def dilated(occupancy: Occupancy, kept: Tensor) -> Occupancy:
    """The cells ``kept`` bool [M] of ``occupancy`` and every occupied cell next to one of
    them (26-neighbourhood)."""
    grid, keys = occupancy.grid, occupancy.keys
    dense = torch.zeros(grid.shape, dtype=torch.float32, device=keys.device)
    coords = grid.coords(keys[kept]).long()
    dense[coords[:, 0], coords[:, 1], coords[:, 2]] = 1.0
    near = F.max_pool3d(dense[None, None], 3, stride=1, padding=1)[0, 0] > 0
    all_coords = grid.coords(keys).long()
    return Occupancy(grid, keys[near[all_coords[:, 0], all_coords[:, 1], all_coords[:, 2]]])


def cells_holding(occupancy: Occupancy, points: Tensor) -> Tensor:
    """bool [M] the occupied cells that hold any of ``points`` float32 [P, 3]."""
    cells = occupancy.grid.cells(points)
    cells = cells[occupancy.grid.inside(cells)]
    return torch.isin(occupancy.keys, occupancy.grid.keys(cells))
