"""The DSVT backbone: stages of rotated-set blocks and attention pooling between stages
(its output goes to BEV through :func:`sparse3d.nn.bev.scatter_to_bev`)."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sparse3d.core.coords import Triple
from sparse3d.core.partition import set_partition
from sparse3d.core.sparse_voxels import SparseVoxels
from sparse3d.nn.dsvt.attention import SetLayout
from sparse3d.nn.dsvt.blocks import DSVTBlock
from sparse3d.nn.dsvt.config import DSVTConfig, DSVTStageConfig
from sparse3d.nn.dsvt.pooling import AttentionPool3d


def shift_windows(stage: DSVTStageConfig, hybrid_factor: Sequence[int]) -> tuple[Triple, Triple]:
    """Windows (x, y, z) of shift 0 and shift 1 (the latter enlarged by ``hybrid_factor``)."""
    enlarged = tuple(w * h for w, h in zip(stage.window, hybrid_factor))
    return stage.window, enlarged  # type: ignore[return-value]


def stage_partitions(
    coords: Tensor, sparse_shape: Triple, stage: DSVTStageConfig, hybrid_factor: Sequence[int]
) -> tuple[SetLayout, SetLayout]:
    """The two partitions (shift 0, shift 1) of one stage, computed once and shared by all
    its blocks. coords: int32 [N, 4] (batch, x, y, z) on ``sparse_shape``."""
    parts = []
    for window, shift in zip(shift_windows(stage, hybrid_factor), stage.shifts):
        # A window spanning the whole z range has nothing to shift into.
        z_shift = 0 if window[2] >= sparse_shape[2] else shift[2]
        part = set_partition(coords, sparse_shape, window, (shift[0], shift[1], z_shift), stage.set_size)
        parts.append(SetLayout.build(part))
    return parts[0], parts[1]


class DSVT(nn.Module):
    """DSVT backbone over sparse voxels (features already encoded, e.g. by DynamicVFE).

    Args:
        config: the backbone configuration (its VFE fields are not used here).

    Examples:
        >>> from sparse3d.nn.dsvt import dsvt_preset
        >>> backbone = DSVT(dsvt_preset("dsvt_p_nuscenes"))
        >>> len(backbone.stages[0])
        4
    """

    def __init__(self, config: DSVTConfig):
        super().__init__()
        self.config = config
        c = config
        self.stages = nn.ModuleList()
        self.pools = nn.ModuleList()
        for stage in c.stages:
            windows = shift_windows(stage, c.hybrid_factor)
            self.stages.append(nn.ModuleList(
                DSVTBlock(c.channels, c.num_heads, c.ffn_channels, windows[b % 2], b % 2) for b in range(stage.num_blocks)
            ))
            if stage.downsample is not None:
                self.pools.append(AttentionPool3d(c.channels, stage.downsample, c.pool_heads))

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        """voxels: coords (batch, x, y, z) on the config's grid, feats float [N, C] ->
        voxels of the last stage (z pooled by the downsample strides), feats [N', C]."""
        if voxels.feats.shape[1] != self.config.channels:
            raise ValueError(f"DSVT: expected {self.config.channels} feature channels, got {voxels.feats.shape[1]}")
        for i, (stage, blocks) in enumerate(zip(self.config.stages, self.stages)):
            with torch.no_grad():
                parts = stage_partitions(voxels.coords, voxels.spatial_shape, stage, self.config.hybrid_factor)
            feats = voxels.feats
            for block in blocks:
                feats = block(feats, parts)
            voxels = voxels.replace_feats(feats)
            if i < len(self.pools):
                voxels = self.pools[i](voxels)
        return voxels
