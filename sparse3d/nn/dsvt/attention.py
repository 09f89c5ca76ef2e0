"""Multi-head attention over dense padded groups, and DSVT's set attention layer.

Both DSVT attentions (inside sets, and the pooling attention) are ``nn.MultiheadAttention``
with ``batch_first=True``: one packed in-projection [3C, C] and an out-projection. Here the
projections run per voxel (before the gather into sets, after the scatter back), which is
the same arithmetic on fewer rows, and the attention itself is one
``scaled_dot_product_attention`` call batched over every group.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparse3d.core.linear import linear
from sparse3d.core.partition import SetPartition
from sparse3d.nn.gather import GatherPlan, gather_rows
from sparse3d.nn.layer_norm import LayerNorm
from sparse3d.nn.linear import Linear


@dataclass
class SetLayout:
    """A set partition plus the gather plans of its two orderings, built once per stage."""

    partition: SetPartition
    """The sets (row 0 y-major, row 1 x-major)."""
    into_sets: tuple[GatherPlan, GatherPlan]
    """Voxel rows [N] -> set slots [M * S], per ordering."""
    from_sets: tuple[GatherPlan, GatherPlan]
    """Set slots [M * S] -> each voxel's first slot [N], per ordering."""

    @classmethod
    def build(cls, partition: SetPartition) -> "SetLayout":
        """Plans for ``partition``."""
        n, slots = partition.first_slot.shape[1], partition.set_inds[0].numel()
        into = tuple(GatherPlan.build(partition.set_inds[r].reshape(-1), n) for r in range(2))
        back = tuple(GatherPlan.build(partition.first_slot[r], slots) for r in range(2))
        return cls(partition, into, back)  # type: ignore[arg-type]


def grouped_attention(q: Tensor, k: Tensor, v: Tensor, num_heads: int, key_mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention inside each group, heads split from channels.

    Args:
        q: float [G, L, C] projected queries.
        k, v: float [G, S, C] projected keys and values.
        num_heads: H, dividing C.
        key_mask: bool [G, S], True for keys to ignore (each group keeps at least one), or None.

    Returns:
        float [G, L, C], heads concatenated (before the out-projection).
    """
    g, length, c = q.shape
    d = c // num_heads
    heads = lambda t: t.view(g, t.shape[1], num_heads, d).transpose(1, 2)
    attend = None if key_mask is None else ~key_mask[:, None, None, :]
    out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=attend)
    return out.transpose(1, 2).reshape(g, length, c)


class SetAttention(nn.Module):
    """DSVT's ``SetAttention`` layer (post-norm): attention inside every set, residual +
    LayerNorm, FFN, residual + LayerNorm.

    Queries and keys are ``x + pos``, values ``x``; keys that repeat the previous slot of their
    set are masked; a voxel repeated in several slots takes its output from its first slot.

    Args:
        channels: C.
        num_heads: attention heads (C must be divisible).
        ffn_channels: hidden width of the FFN.
    """

    def __init__(self, channels: int, num_heads: int, ffn_channels: int):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"SetAttention: channels {channels} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.in_proj = Linear(channels, 3 * channels)
        self.out_proj = Linear(channels, channels)
        self.linear1 = Linear(channels, ffn_channels)
        self.linear2 = Linear(ffn_channels, channels)
        self.norm1 = LayerNorm(channels)
        self.norm2 = LayerNorm(channels)
        self.activation = nn.GELU()

    def attend(self, feats: Tensor, pos: Tensor, layout: SetLayout, row: int) -> Tensor:
        """Set attention alone (projections included), per voxel.

        Args:
            feats: float [N, C] voxel features.
            pos: float [N, C] position embedding.
            layout: the partition of these voxels, with its gather plans.
            row: 0 for the y-major sets, 1 for the x-major sets.

        Returns:
            float [N, C], each voxel's output from its first slot.
        """
        c = feats.shape[1]
        n_sets, set_size = layout.partition.set_inds.shape[1:]
        w, b = self.in_proj.weight, self.in_proj.bias
        qk = linear(feats + pos, w[: 2 * c], b[: 2 * c])  # [N, 2C]
        v = linear(feats, w[2 * c :], b[2 * c :])  # [N, C]
        # One gather for q, k and v: the projections run on N rows, not M * S slots.
        qkv = gather_rows(torch.cat([qk, v], 1), layout.into_sets[row]).view(n_sets, set_size, 3 * c)
        q, k, v = qkv.split(c, dim=2)
        out = grouped_attention(q, k, v, self.num_heads, layout.partition.key_mask[row])  # [M, S, C]
        return self.out_proj(gather_rows(out.view(-1, c), layout.from_sets[row]))

    def forward(self, feats: Tensor, pos: Tensor, layout: SetLayout, row: int) -> Tensor:
        """Args as :meth:`attend`; returns float [N, C]."""
        x = self.norm1(feats + self.attend(feats, pos, layout, row))
        return self.norm2(x + self.linear2(self.activation(self.linear1(x))))
