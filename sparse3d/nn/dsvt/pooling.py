"""DSVT's attention-style 3D pooling between stages (Stage_ReductionAtt_Block)."""

from collections.abc import Sequence

import torch
from torch import nn

from sparse3d.core.column_sum import add_to_rows
from sparse3d.core.coords import as_triple
from sparse3d.core.linear import linear
from sparse3d.core.sparse_voxels import SparseVoxels
from sparse3d.core.unique import downsample_coords
from sparse3d.nn.dsvt.attention import grouped_attention
from sparse3d.nn.layer_norm import LayerNorm
from sparse3d.nn.linear import Linear


class AttentionPool3d(nn.Module):
    """Pools every ``stride`` block of voxels into one voxel at ``coord // stride``.

    Each block's voxels fill a zero placeholder ``[P = prod(stride), C]`` at their offset
    inside the block; the query is the channel-wise max over the placeholder (empty slots
    count as 0, as in DSVT), keys are the placeholder + a learned per-offset position
    parameter, values the placeholder; 8-head attention, then LayerNorm(attention + query).

    Args:
        channels: C.
        stride: pooling factor per axis (x, y, z), e.g. (1, 1, 4).
        num_heads: attention heads (DSVT: 8).
    """

    def __init__(self, channels: int, stride: Sequence[int], num_heads: int = 8):
        super().__init__()
        self.stride = as_triple(stride, "AttentionPool3d.stride")
        if channels % num_heads or min(self.stride) < 1:
            raise ValueError(f"AttentionPool3d: need channels ({channels}) divisible by num_heads ({num_heads}) and stride >= 1, got stride {self.stride}")
        volume = self.stride[0] * self.stride[1] * self.stride[2]
        self.num_heads = num_heads
        self.pos_embedding = nn.Parameter(torch.randn(volume, channels) * 0.01)
        self.in_proj = Linear(channels, 3 * channels)
        self.out_proj = Linear(channels, channels)
        self.norm = LayerNorm(channels)

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        """Pools ``voxels`` (coords (batch, x, y, z), feats [N, C]) to [N', C] on the grid
        ``ceil(spatial_shape / stride)``."""
        coarse, inverse, coarse_shape = downsample_coords(voxels.coords, voxels.spatial_shape, self.stride)
        sx, sy, sz = self.stride
        c = voxels.coords.long()
        slot = (c[:, 1] % sx * sy + c[:, 2] % sy) * sz + c[:, 3] % sz
        feats = voxels.feats
        n_out, channels = coarse.shape[0], feats.shape[1]
        placeholder = feats.new_zeros(n_out, self.pos_embedding.shape[0], channels)
        placeholder = placeholder.index_put((inverse.long(), slot), feats)  # [N', P, C]
        query = placeholder.amax(1, keepdim=True)  # [N', 1, C]
        w, b = self.in_proj.weight, self.in_proj.bias
        q = linear(query, w[:channels], b[:channels])
        k = linear(add_to_rows(placeholder, self.pos_embedding), w[channels : 2 * channels], b[channels : 2 * channels])
        v = linear(placeholder, w[2 * channels :], b[2 * channels :])
        out = self.out_proj(grouped_attention(q, k, v, self.num_heads))  # [N', 1, C]
        pooled = self.norm(out + query).squeeze(1)
        return SparseVoxels(coarse, pooled, coarse_shape, voxels.batch_size, check=False)
