"""Tile binning: which Gaussians touch which pixel tile, sorted front to back per tile.

Deterministic by construction: every (tile, Gaussian) pair gets a unique integer key
(tile, then depth rank, ties broken by Gaussian index), so one sort fixes the order.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from sparse3d._native import HAS_NATIVE


@dataclass(frozen=True)
class TileBins:
    """The (tile, Gaussian) intersections of C images, in CSR form."""

    tile_offsets: Tensor
    """int64 [C * tiles_y * tiles_x + 1]: tile t owns ``flatten_ids[tile_offsets[t]:tile_offsets[t + 1]]``;
    tiles are numbered camera-major, then row-major."""
    flatten_ids: Tensor
    """int64 [M] index ``c * N + n`` of the projected Gaussian, front to back within a tile."""


def tile_grid(width: int, height: int, tile_size: int) -> tuple[int, int]:
    """Number of tiles (tiles_x, tiles_y) covering a W x H image."""
    return -(-width // tile_size), -(-height // tile_size)


def tile_rects(means2d: Tensor, radii: Tensor, width: int, height: int, tile_size: int) -> Tensor:
    """Half-open tile ranges covered by each Gaussian's screen box (gsplat's rule).

    Args:
        means2d: float [C, N, 2] pixel centres.
        radii: int32 [C, N, 2] per-axis radii; 0 means culled.

    Returns:
        int64 [C, N, 4] (x0, x1, y0, y1) in tile units, empty (x0 == x1) for culled ones.
    """
    tiles_x, tiles_y = tile_grid(width, height, tile_size)
    m = means2d.detach().double()
    r = radii.double()
    limit = m.new_tensor([tiles_x, tiles_y])
    lo = torch.minimum(torch.clamp_min(torch.floor((m - r) / tile_size), 0.0), limit)
    hi = torch.minimum(torch.clamp_min(torch.ceil((m + r) / tile_size), 0.0), limit)
    hi = torch.where((radii > 0).all(dim=-1, keepdim=True), hi, lo)
    return torch.stack([lo[..., 0], hi[..., 0], lo[..., 1], hi[..., 1]], dim=-1).long()


def bin_gaussians(
    means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int, tile_size: int
) -> TileBins:
    """Native tile binning (sparse3d._C); same arguments and result as :func:`bin_gaussians_ref`."""
    return TileBins(*torch.ops.sparse3d.gaussian_bin(means2d.detach(), radii, depths.detach(), width, height, tile_size))


def bin_gaussians_ref(
    means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int, tile_size: int
) -> TileBins:
    """Lists, per tile, the Gaussians whose screen box overlaps it, nearest first.

    Args:
        means2d: float [C, N, 2] pixel centres.
        radii: int32 [C, N, 2] per-axis radii; 0 means culled.
        depths: float [C, N] camera-space z, the sort key inside a tile.

    Returns:
        The :class:`TileBins` of all C images.
    """
    C, N = depths.shape
    tiles_x, tiles_y = tile_grid(width, height, tile_size)
    rects = tile_rects(means2d, radii, width, height, tile_size).reshape(C * N, 4)
    span_x, span_y = rects[:, 1] - rects[:, 0], rects[:, 3] - rects[:, 2]
    counts = span_x * span_y
    ids = torch.nonzero(counts).squeeze(1)
    per_id = counts[ids]
    owner = torch.repeat_interleave(ids, per_id)  # [M] Gaussian of each intersection
    first = torch.cumsum(per_id, 0) - per_id
    local = torch.arange(owner.numel(), device=owner.device) - torch.repeat_interleave(first, per_id)
    width_of = span_x[owner]
    tx = rects[owner, 0] + local % width_of
    ty = rects[owner, 2] + local // width_of
    camera = owner // N
    tile = (camera * tiles_y + ty) * tiles_x + tx

    depth_rank = torch.empty(C * N, dtype=torch.int64, device=depths.device)
    depth_rank[torch.argsort(depths.detach().reshape(-1), stable=True)] = torch.arange(
        C * N, device=depths.device
    )
    order = torch.argsort(tile * (C * N) + depth_rank[owner])
    n_tiles = C * tiles_x * tiles_y
    tile_offsets = torch.zeros(n_tiles + 1, dtype=torch.int64, device=depths.device)
    tile_offsets[1:] = torch.cumsum(torch.bincount(tile, minlength=n_tiles), 0)
    return TileBins(tile_offsets, owner[order])


if HAS_NATIVE:

    @torch.library.register_fake("sparse3d::gaussian_bin")
    def _(means2d, radii, depths, width, height, tile_size):
        n_tiles = depths.shape[0] * (-(-width // tile_size)) * (-(-height // tile_size))
        n_isects = torch.library.get_ctx().new_dynamic_size()
        return depths.new_empty(n_tiles + 1, dtype=torch.int64), depths.new_empty(n_isects, dtype=torch.int64)
