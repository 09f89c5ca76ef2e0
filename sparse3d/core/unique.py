"""Deduplication and downsampling of voxel coordinates."""

from collections.abc import Sequence

import torch
from torch import Tensor

from sparse3d._native import HAS_NATIVE
from sparse3d.core.coords import as_triple, coord_keys, keys_to_coords


def unique_coords(coords: Tensor, spatial_shape: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Unique voxel coordinates and the row each input maps to.

    Args:
        coords: int32 [N, 4] (batch, c0, c1, c2), batch >= 0, inside ``spatial_shape``.
        spatial_shape: (S0, S1, S2).

    Returns:
        unique: int32 [U, 4] sorted by (batch, c0, c1, c2).
        inverse: int32 [N], ``unique[inverse] == coords``.
    """
    if coords.dtype != torch.int32 or coords.dim() != 2 or coords.shape[1] != 4:
        raise ValueError(f"unique_coords: coords must be int32 [N, 4], got {coords.dtype} {list(coords.shape)}")
    shape = list(as_triple(spatial_shape, "spatial_shape"))
    if HAS_NATIVE:
        return torch.ops.sparse3d.unique_coords(coords.contiguous(), shape)
    return unique_coords_ref(coords, shape)


def unique_coords_ref(coords: Tensor, spatial_shape: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Pure-torch reference of :func:`unique_coords`."""
    c = coords.long()
    inside = (c[:, 0] >= 0) & ((c[:, 1:] >= 0) & (c[:, 1:] < torch.tensor(list(spatial_shape)))).all(1)
    if not bool(inside.all()):
        row = int((~inside).nonzero()[0])
        raise RuntimeError(f"sparse3d.unique_coords: row {row} {coords[row].tolist()} has a negative batch or lies outside spatial_shape {list(spatial_shape)}")
    keys, inverse = torch.unique(coord_keys(coords, spatial_shape), return_inverse=True)
    return keys_to_coords(keys, spatial_shape), inverse.int()


def downsample_coords(coords: Tensor, spatial_shape: Sequence[int], stride: int | Sequence[int]) -> tuple[Tensor, Tensor, tuple[int, int, int]]:
    """Pools voxel sites onto a grid ``stride`` times coarser (MinkowskiEngine-style,
    non-dilating): site c goes to ``c // stride``.

    Args:
        coords: int32 [N, 4] (batch, c0, c1, c2) inside ``spatial_shape``.
        spatial_shape: (S0, S1, S2).
        stride: per axis.

    Returns:
        coarse: int32 [U, 4] unique coarse sites, sorted.
        inverse: int32 [N] coarse row of each input row.
        coarse_shape: ``ceil(S / stride)`` per axis.
    """
    step = as_triple(stride, "stride")
    if min(step) < 1:
        raise ValueError(f"downsample_coords: stride must be >= 1, got {step}")
    coarse_shape = tuple(-(-int(s) // t) for s, t in zip(spatial_shape, step))
    scaled = coords.clone()
    scaled[:, 1:] = torch.div(coords[:, 1:], torch.tensor(step, dtype=torch.int32, device=coords.device), rounding_mode="floor")
    unique, inverse = unique_coords(scaled, coarse_shape)
    return unique, inverse, coarse_shape  # type: ignore[return-value]


if HAS_NATIVE:

    @torch.library.register_fake("sparse3d::unique_coords")
    def _(coords, spatial_shape):
        n_unique = torch.library.get_ctx().new_dynamic_size()
        return coords.new_empty(n_unique, 4), coords.new_empty(coords.shape[0])
