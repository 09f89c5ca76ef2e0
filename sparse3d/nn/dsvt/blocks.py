"""DSVT blocks: two rotated-set attention layers with learned window position embeddings."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sparse3d.nn.dsvt.attention import SetAttention, SetLayout
from sparse3d.nn.layer_norm import LayerNorm
from sparse3d.nn.linear import Linear
from sparse3d.nn.norm import SparseBatchNorm1d


class PositionEmbedding(nn.Module):
    """Linear(D -> C) - BatchNorm - ReLU - Linear(C -> C) on in-window coordinates centred
    on the window middle; D = 2 (x, y) when the window is flat in z, else 3.

    Args:
        window: (wx, wy, wz) window size of the partition whose coordinates it embeds.
        channels: C.
    """

    def __init__(self, window: Sequence[int], channels: int):
        super().__init__()
        self.register_buffer("half_window", torch.tensor([w / 2.0 for w in window]), persistent=False)
        self.dims = 2 if window[2] == 1 else 3
        self.mlp = nn.Sequential(
            Linear(self.dims, channels), SparseBatchNorm1d(channels), nn.ReLU(), Linear(channels, channels)
        )

    def forward(self, coords_in_window: Tensor, dtype: torch.dtype) -> Tensor:
        """int32 [N, 3] (x, y, z) in-window coordinates -> float [N, C] of ``dtype``."""
        centred = coords_in_window.to(dtype) - self.half_window.to(dtype)
        return self.mlp(centred[:, : self.dims])


class DSVTEncoderLayer(nn.Module):
    """``SetAttention`` wrapped in one more residual + LayerNorm (DSVT_EncoderLayer)."""

    def __init__(self, channels: int, num_heads: int, ffn_channels: int):
        super().__init__()
        self.win_attn = SetAttention(channels, num_heads, ffn_channels)
        self.norm = LayerNorm(channels)

    def forward(self, feats: Tensor, pos: Tensor, layout: SetLayout, row: int) -> Tensor:
        """feats, pos float [N, C]; ``row`` picks the y-major (0) or x-major (1) sets."""
        return self.norm(feats + self.win_attn(feats, pos, layout, row))


class DSVTBlock(nn.Module):
    """Two encoder layers, the first on y-major sets, the second on x-major sets, of the
    window partition with shift ``shift``; then residual + LayerNorm around both.

    Position embedding: one MLP per layer, both fed the in-window coordinates of the
    block's own shift. (The published DSVT code embeds layer i with the coordinates of
    shift i -- its "Bug Alert", issue #50; we use the coordinates the sets were built from.)

    Args:
        channels, num_heads, ffn_channels: attention width, heads, FFN width.
        window: (wx, wy, wz) window of this block's shift.
        shift: 0 or 1, which of the stage's two partitions the block uses.
    """

    def __init__(self, channels: int, num_heads: int, ffn_channels: int, window: Sequence[int], shift: int):
        super().__init__()
        self.shift = shift
        self.layers = nn.ModuleList(DSVTEncoderLayer(channels, num_heads, ffn_channels) for _ in range(2))
        self.pos_embeds = nn.ModuleList(PositionEmbedding(window, channels) for _ in range(2))
        self.norm = LayerNorm(channels)

    def forward(self, feats: Tensor, layouts: Sequence[SetLayout]) -> Tensor:
        """feats float [N, C]; ``layouts`` the stage's (shift 0, shift 1) partitions -> float [N, C]."""
        layout = layouts[self.shift]
        coords_in_window = layout.partition.coords_in_window
        out = feats
        for row, (layer, pos_embed) in enumerate(zip(self.layers, self.pos_embeds)):
            out = layer(out, pos_embed(coords_in_window, feats.dtype), layout, row)
        return self.norm(out + feats)
