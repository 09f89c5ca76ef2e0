"""Small DSVT cases shared by the DSVT tests (helpers only; no tests here)."""

import torch

from sparse3d.core.sparse_voxels import SparseVoxels
from sparse3d.nn.dsvt import DSVTConfig, DSVTStageConfig


def random_voxels(seed: int, n: int, shape, channels: int, batch_size: int = 2, dtype=torch.float32) -> SparseVoxels:
    """``n`` unique random voxels (unsorted) with random features."""
    g = torch.Generator().manual_seed(seed)
    cells = batch_size * shape[0] * shape[1] * shape[2]
    keys = torch.randperm(cells, generator=g)[:n]
    z = keys % shape[2]
    y = keys // shape[2] % shape[1]
    x = keys // (shape[2] * shape[1]) % shape[0]
    b = keys // (shape[2] * shape[1] * shape[0])
    coords = torch.stack([b, x, y, z], 1).int()
    feats = torch.randn(coords.shape[0], channels, generator=g, dtype=dtype)
    return SparseVoxels(coords, feats, shape, batch_size)


def tiny_voxel_config(channels: int = 16) -> DSVTConfig:
    """A two-stage DSVT-V-like config on a 12 x 10 x 4 grid, pooling z by 2 between stages."""
    return DSVTConfig(
        pc_range=(0.0, 0.0, 0.0, 12.0, 10.0, 4.0),
        voxel_size=(1.0, 1.0, 1.0),
        point_channels=4,
        vfe_filters=(channels,),
        channels=channels,
        num_heads=2,
        pool_heads=2,
        ffn_channels=2 * channels,
        stages=(
            DSVTStageConfig(window=(4, 4, 4), shifts=((0, 0, 0), (2, 2, 0)), set_size=6, num_blocks=2, downsample=(1, 1, 2)),
            DSVTStageConfig(window=(4, 4, 2), shifts=((0, 0, 0), (2, 2, 0)), set_size=5, num_blocks=2),
        ),
        hybrid_factor=(2, 1, 1),
    )
