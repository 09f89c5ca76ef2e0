"""Random sparse voxel inputs shared by the core and nn sparse-conv tests."""

import torch

from sparse3d.core.sparse_voxels import SparseVoxels


def random_coords(seed: int, shape: tuple[int, int, int], batch_size: int, density: float) -> torch.Tensor:
    """int32 [N, 4] unique (batch, c0, c1, c2) sites, each cell active with prob. density,
    in a shuffled order (kernels must not rely on sorted input)."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch_size, *shape, generator=gen) < density
    coords = mask.nonzero().int()
    return coords[torch.randperm(coords.shape[0], generator=gen)].contiguous()


def random_voxels(
    seed: int,
    shape: tuple[int, int, int] = (7, 8, 9),
    batch_size: int = 2,
    density: float = 0.2,
    channels: int = 3,
    dtype: torch.dtype = torch.float64,
) -> SparseVoxels:
    """SparseVoxels on random sites with standard-normal features float [N, channels]."""
    coords = random_coords(seed, shape, batch_size, density)
    gen = torch.Generator().manual_seed(seed + 1)
    feats = torch.randn(coords.shape[0], channels, generator=gen, dtype=dtype)
    return SparseVoxels(coords, feats, shape, batch_size)


def sort_by_coords(coords: torch.Tensor, feats: torch.Tensor, shape) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows reordered by (batch, c0, c1, c2), to compare libraries that order sites differently."""
    from sparse3d.core.coords import coord_keys

    order = coord_keys(coords, shape).argsort()
    return coords[order], feats[order]
