"""Which boxes centred on occupied voxels contain a point: the K nearest, with
inverse-distance weights (Strivec's aggregation of overlapping local tensors).

Each occupied voxel of a :class:`~sparse3d.core.grid.VoxelGrid` carries a cube of
half-size h < voxel_size centred on it (Strivec: h = 0.75 x the voxel). A cube reaches
less than one voxel beyond its own, so a point can only lie in the cubes of the 2 x 2 x 2
voxels whose centres surround it: those 8 candidates are looked up in the core's
coordinate hash, the ones whose cube holds the point (max-norm distance <= h) are kept,
and of those the K with the nearest centres (Euclidean; ties to the lower voxel index)
are returned, nearest first, with weights ``w = 1 / (d + 1e-6)`` normalised to sum to 1.
(Strivec divides by max(sum w, 1) instead; the two agree whenever h sqrt(3) < 1, where
every w exceeds 1.)
"""

import torch
from torch import Tensor

from sparse3d._native import HAS_NATIVE
from sparse3d.core.grid import VoxelGrid

# The 8 candidate voxels of a point, offsets from the lower one, in (x, y, z) order.
_CORNERS = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
_EPS = 1e-6


def box_lookup(points: Tensor, grid: VoxelGrid, occupied: Tensor, half_size: float, k: int) -> tuple[Tensor, Tensor]:
    """The K nearest boxes that contain each point, and their weights.

    Args:
        points: float32 [S, 3] world-frame points.
        grid: the voxel grid; box n is centred on voxel n's centre (``grid.centers``).
        occupied: int64 [N] sorted unique keys (``grid.keys``) of the occupied voxels:
            box n belongs to ``occupied[n]``.
        half_size: h, half the box's edge, in (0, voxel_size).
        k: how many boxes to keep at most, >= 1.

    Returns:
        index: int64 [S, k] box numbers (positions in ``occupied``), nearest first, -1
            after the last containing box;
        weights: float32 [S, k] inverse-distance weights summing to 1 over the found boxes
            (0 where index is -1; all 0 for a point in no box).
    """
    _check_lookup_args(points, grid, occupied, half_size, k)
    if HAS_NATIVE:
        return torch.ops.sparse3d.box_lookup(points, occupied, list(grid.lower), grid.voxel_size, list(grid.shape), half_size, k)
    return box_lookup_ref(points, grid, occupied, half_size, k)


def box_lookup_ref(points: Tensor, grid: VoxelGrid, occupied: Tensor, half_size: float, k: int) -> tuple[Tensor, Tensor]:
    """Pure-torch reference of :func:`box_lookup` (same arguments and result).

    The native kernels round the same float32 expressions one by one, with two exceptions:
    their square root is correctly rounded (torch's vectorised CPU sqrt is not always), and
    they sum the weights nearest first (torch's sum of 5 or more takes another order). So
    the weights agree to float rounding, and the indices unless two distances lie within
    an ulp of each other.
    """
    lower = torch.tensor(grid.lower, dtype=torch.float32, device=points.device)
    base = ((points - lower) / grid.voxel_size - 0.5).floor().long()  # the voxel whose centre is just below
    cells = base[:, None, :] + _CORNERS.to(points.device)  # [S, 8, 3]
    box = grid.lookup(occupied, cells.reshape(-1, 3)).reshape(-1, 8)
    centers = grid.centers(cells.reshape(-1, 3)).reshape(-1, 8, 3)
    offset = points[:, None, :] - centers
    dist = (offset[..., 0] * offset[..., 0] + offset[..., 1] * offset[..., 1] + offset[..., 2] * offset[..., 2]).sqrt()
    found = (box >= 0) & (offset.abs().amax(-1) <= half_size)
    # Nearest first, ties to the lower box number: sort by (distance, box) with misses last.
    key_dist = torch.where(found, dist, torch.inf)
    order = torch.argsort(box, dim=1, stable=True)
    order = order.gather(1, torch.argsort(key_dist.gather(1, order), dim=1, stable=True))[:, :k]
    index = torch.where(found.gather(1, order), box.gather(1, order), -1)
    w = torch.where(index >= 0, 1.0 / (dist.gather(1, order) + _EPS), 0.0)
    total = w.sum(1, keepdim=True)
    weights = torch.where(total > 0, w / total.clamp(min=torch.finfo(w.dtype).tiny), 0.0)
    if index.shape[1] < k:  # fewer than k candidates exist: pad
        pad = k - index.shape[1]
        index = torch.nn.functional.pad(index, (0, pad), value=-1)
        weights = torch.nn.functional.pad(weights, (0, pad))
    return index, weights


def _check_lookup_args(points: Tensor, grid: VoxelGrid, occupied: Tensor, half_size: float, k: int) -> None:
    if points.dim() != 2 or points.shape[1] != 3 or points.dtype != torch.float32:
        raise ValueError(f"box_lookup: points must be float32 [S, 3], got {points.dtype} {list(points.shape)}")
    if occupied.dim() != 1 or occupied.dtype != torch.int64:
        raise ValueError(f"box_lookup: occupied must be int64 [N] keys, got {occupied.dtype} {list(occupied.shape)}")
    if not 0 < half_size < grid.voxel_size:
        raise ValueError(f"box_lookup: half_size must be in (0, voxel_size={grid.voxel_size}), got {half_size}")
    if k < 1:
        raise ValueError(f"box_lookup: k must be >= 1, got {k}")


if HAS_NATIVE:

    @torch.library.register_fake("sparse3d::box_lookup")
    def _(points, occupied, lower, voxel_size, shape, half_size, k):
        return points.new_empty(points.shape[0], k, dtype=torch.int64), points.new_empty(points.shape[0], k)
