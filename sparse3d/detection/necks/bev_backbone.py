"""OpenPCDet's BaseBEVBackbone (CenterPoint's 2D backbone) with its module names, so its
checkpoints load as-is: per level a strided block of 3x3 convs, then a transposed conv
that brings the level back to the first level's resolution; the levels are concatenated.

All layers are the deterministic ones of :mod:`sparse3d.nn` (results do not depend on the
thread count); batch norms have OpenPCDet's eps 1e-3 and momentum 0.01.
"""

from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from sparse3d.nn.conv2d import Conv2d, ConvTranspose2d
from sparse3d.nn.norm import BatchNorm2d

_norm = partial(BatchNorm2d, eps=1e-3, momentum=0.01)


@dataclass
class BevBackboneConfig:
    """Levels of the BEV backbone (OpenPCDet's BACKBONE_2D keys), CenterPoint's nuScenes values."""

    layer_nums: tuple[int, ...] = (5, 5)
    """3x3 convs after each level's first (strided) conv."""
    layer_strides: tuple[int, ...] = (1, 2)
    """Stride of each level's first conv."""
    num_filters: tuple[int, ...] = (128, 256)
    """Channels of each level."""
    upsample_strides: tuple[int, ...] = (1, 2)
    """Upsampling of each level back to the first level's resolution (the product of the
    layer strides up to that level)."""
    num_upsample_filters: tuple[int, ...] = (256, 256)
    """Channels of each upsampled level; the output has their sum."""

    def __post_init__(self) -> None:
        levels = {len(self.layer_nums), len(self.layer_strides), len(self.num_filters),
                  len(self.upsample_strides), len(self.num_upsample_filters)}
        if len(levels) != 1 or not self.layer_nums:
            raise ValueError(
                "BevBackboneConfig: layer_nums, layer_strides, num_filters, upsample_strides and num_upsample_filters "
                f"need one entry per level, got {self.layer_nums}, {self.layer_strides}, {self.num_filters}, "
                f"{self.upsample_strides}, {self.num_upsample_filters}"
            )
        if min(self.layer_strides) < 1 or min(self.upsample_strides) < 1:
            raise ValueError(f"BevBackboneConfig: strides must be >= 1, got {self.layer_strides} and {self.upsample_strides}")

    @property
    def out_channels(self) -> int:
        """Channels of the output map."""
        return sum(self.num_upsample_filters)

    @property
    def stride(self) -> int:
        """Output resolution relative to the input: the first level's stride over its upsampling."""
        return self.layer_strides[0] // self.upsample_strides[0]


class BaseBEVBackbone(nn.Module):
    """Multi-level BEV backbone; float [B, in_channels, H, W] -> [B, out_channels, H / s, W / s]
    with s = ``config.stride`` (1 for CenterPoint).

    Args:
        config: the levels.
        in_channels: channels of the input BEV map (CenterPoint: 128 x 2 height cells).
    """

    def __init__(self, config: BevBackboneConfig, in_channels: int):
        super().__init__()
        self.config, self.in_channels = config, in_channels
        self.blocks, self.deblocks = nn.ModuleList(), nn.ModuleList()
        channels = in_channels
        for layers, stride, filters, up, up_filters in zip(
            config.layer_nums, config.layer_strides, config.num_filters, config.upsample_strides, config.num_upsample_filters
        ):
            # ZeroPad2d + unpadded conv, not a padded conv: the Sequential indices are OpenPCDet's.
            block = [nn.ZeroPad2d(1), Conv2d(channels, filters, 3, stride=stride, bias=False), _norm(filters), nn.ReLU()]
            for _ in range(layers):
                block += [Conv2d(filters, filters, 3, padding=1, bias=False), _norm(filters), nn.ReLU()]
            self.blocks.append(nn.Sequential(*block))
            self.deblocks.append(nn.Sequential(ConvTranspose2d(filters, up_filters, up, stride=up, bias=False), _norm(up_filters), nn.ReLU()))
            channels = filters

    def forward(self, bev: Tensor) -> Tensor:
        """float [B, in_channels, H, W] -> float [B, out_channels, H / stride, W / stride]."""
        if bev.dim() != 4 or bev.shape[1] != self.in_channels:
            raise ValueError(f"BaseBEVBackbone: input must be [B, {self.in_channels}, H, W], got {list(bev.shape)}")
        levels = []
        x = bev
        for block, deblock in zip(self.blocks, self.deblocks):
            x = block(x)
            levels.append(deblock(x))
        return torch.cat(levels, dim=1)
