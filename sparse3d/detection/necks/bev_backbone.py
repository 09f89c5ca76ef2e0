"""OpenPCDet's BaseBEVBackbone (CenterPoint's 2D backbone) with its module names, so its
checkpoints load as-is: per level a strided block of 3x3 convs, then a "deblock" that
brings the level to the output resolution (a transposed conv, or a strided conv for an
upsample stride below 1); the levels are concatenated.

All layers are the deterministic ones of :mod:`sparse3d.nn` (results do not depend on the
thread count); batch norms have OpenPCDet's eps 1e-3 and momentum 0.01.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import NamedTuple

import torch
from torch import Tensor, nn

from sparse3d.nn.conv2d import Conv2d, ConvTranspose2d
from sparse3d.nn.norm import BatchNorm2d

_norm = partial(BatchNorm2d, eps=1e-3, momentum=0.01)


class BevLevel(NamedTuple):
    """One level of a BEV backbone (see :meth:`BevBackboneConfig.levels`)."""

    in_channels: int
    """Channels it reads: the backbone's input for the first level, the previous level's
    ``filters`` after."""
    layers: int
    """Layers after its first (strided) one."""
    stride: int
    """Stride of its first layer."""
    filters: int
    """Its channels."""
    upsample_stride: float
    """Resampling of its output to the backbone's output resolution."""
    upsample_filters: int
    """Channels of its resampled output."""


@dataclass
class BevBackboneConfig:
    """Levels of the BEV backbone (OpenPCDet's BACKBONE_2D keys), CenterPoint's nuScenes values."""

    layer_nums: tuple[int, ...] = (5, 5)
    """3x3 convs after each level's first (strided) conv."""
    layer_strides: tuple[int, ...] = (1, 2)
    """Stride of each level's first conv."""
    num_filters: tuple[int, ...] = (128, 256)
    """Channels of each level."""
    upsample_strides: tuple[float, ...] = (1, 2)
    """Resampling of each level to the output resolution: s >= 1 (an integer) upsamples by a
    transposed conv of kernel and stride s; s < 1 (1 / n) downsamples by an n x n conv of
    stride n (DSVT's [0.5, 1, 2]). Every level must land on the same resolution: the product
    of the layer strides up to the level, divided by s, is the same integer for all."""
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
        if min(self.layer_strides) < 1:
            raise ValueError(f"BevBackboneConfig: layer_strides must be >= 1, got {self.layer_strides}")
        for s in self.upsample_strides:
            resampling_ratio(s)  # raises for a stride that is neither an integer nor 1 / n
        cumulative, strides = 1, set()
        for layer_stride, s in zip(self.layer_strides, self.upsample_strides):
            cumulative *= layer_stride
            strides.add(cumulative / resampling_ratio(s))
        if len(strides) != 1 or next(iter(strides)).denominator != 1:
            raise ValueError(
                "BevBackboneConfig: every level must come out at one integer stride (product of layer_strides up "
                f"to the level / upsample stride), got {[str(v) for v in sorted(strides)]} from layer_strides "
                f"{self.layer_strides} and upsample_strides {self.upsample_strides}"
            )

    def levels(self, in_channels: int) -> list[BevLevel]:
        """The levels in order, the first reading ``in_channels``."""
        reads = (in_channels, *self.num_filters[:-1])
        return [BevLevel(*level) for level in zip(reads, self.layer_nums, self.layer_strides, self.num_filters,
                                                  self.upsample_strides, self.num_upsample_filters)]

    @property
    def out_channels(self) -> int:
        """Channels of the output map."""
        return sum(self.num_upsample_filters)

    @property
    def stride(self) -> int:
        """Output resolution relative to the input: the first level's stride over its
        upsampling (the same for every level)."""
        return int(self.layer_strides[0] / resampling_ratio(self.upsample_strides[0]))


def resampling_ratio(upsample_stride: float) -> Fraction:
    """An upsample stride as an exact ratio: an integer s >= 1, or 1 / n for n >= 2.

    Raises:
        ValueError: for any other value (e.g. 0.3 or 1.5).
    """
    if upsample_stride >= 1 and float(upsample_stride).is_integer():
        return Fraction(int(upsample_stride))
    if 0 < upsample_stride < 1:
        n = round(1 / upsample_stride)
        if abs(n * upsample_stride - 1) < 1e-6:
            return Fraction(1, n)
    raise ValueError(f"BevBackboneConfig: an upsample stride must be an integer >= 1 or 1 / n, got {upsample_stride}")


def deblock(in_channels: int, out_channels: int, upsample_stride: float) -> nn.Sequential:
    """OpenPCDet's deblock of one level: [resampling conv, BatchNorm2d, ReLU], no conv bias.

    The conv is a transposed conv of kernel = stride = s for s >= 1, and an n x n conv of
    stride n for s = 1 / n; float [B, in_channels, H, W] -> [B, out_channels, H s, W s]
    (H // n, W // n when downsampling).
    """
    ratio = resampling_ratio(upsample_stride)
    if ratio.denominator == 1:
        conv = ConvTranspose2d(in_channels, out_channels, ratio.numerator, stride=ratio.numerator, bias=False)
    else:
        conv = Conv2d(in_channels, out_channels, ratio.denominator, stride=ratio.denominator, bias=False)
    return nn.Sequential(conv, _norm(out_channels), nn.ReLU())


class LevelledBevBackbone(nn.Module, ABC):
    """The frame of OpenPCDet's multi-level BEV backbones: per level ``blocks.{i}`` (the
    subclass's :meth:`level_block`) on the previous level's output, then ``deblocks.{i}``
    (:func:`deblock`) back to the common resolution; the levels concatenated along the
    channels. float [B, in_channels, H, W] -> [B, config.out_channels, H / s, W / s] with
    s = ``config.stride``; H and W must be multiples of the product of the layer strides,
    so that the levels meet.

    Args:
        config: the levels.
        in_channels: channels of the input BEV map.
    """

    def __init__(self, config: BevBackboneConfig, in_channels: int):
        super().__init__()
        self.config, self.in_channels = config, in_channels
        self.blocks, self.deblocks = nn.ModuleList(), nn.ModuleList()
        for level in config.levels(in_channels):  # block, then deblock: the reference's order of initialisation
            self.blocks.append(self.level_block(level))
            self.deblocks.append(deblock(level.filters, level.upsample_filters, level.upsample_stride))

    @abstractmethod
    def level_block(self, level: BevLevel) -> nn.Sequential:
        """The layers of one level: float [B, level.in_channels, H, W] ->
        [B, level.filters, H / level.stride, W / level.stride]."""

    def forward(self, bev: Tensor) -> Tensor:
        """float [B, in_channels, H, W] -> float [B, out_channels, H / stride, W / stride].

        Raises:
            ValueError: wrong input channels, or levels that come out at different sizes.
        """
        name = type(self).__name__
        if bev.dim() != 4 or bev.shape[1] != self.in_channels:
            raise ValueError(f"{name}: input must be [B, {self.in_channels}, H, W], got {list(bev.shape)}")
        levels = []
        x = bev
        for block, level_deblock in zip(self.blocks, self.deblocks):
            x = block(x)
            levels.append(level_deblock(x))
        sizes = {tuple(level.shape[2:]) for level in levels}
        if len(sizes) != 1:
            raise ValueError(
                f"{name}: the levels of a {list(bev.shape[2:])} map come out at sizes {sorted(sizes)}; "
                "H and W must be multiples of the product of the layer strides and of the output stride"
            )
        return torch.cat(levels, dim=1)


class BaseBEVBackbone(LevelledBevBackbone):
    """CenterPoint's BEV backbone: each level a padded strided 3x3 conv and ``layers`` 3x3
    convs, each followed by batch norm and ReLU (CenterPoint: stride 1, input 128 x 2 height
    cells)."""

    def level_block(self, level: BevLevel) -> nn.Sequential:
        # ZeroPad2d + unpadded conv, not a padded conv: the Sequential indices are OpenPCDet's.
        block = [nn.ZeroPad2d(1), Conv2d(level.in_channels, level.filters, 3, stride=level.stride, bias=False),
                 _norm(level.filters), nn.ReLU()]
        for _ in range(level.layers):
            block += [Conv2d(level.filters, level.filters, 3, padding=1, bias=False), _norm(level.filters), nn.ReLU()]
        return nn.Sequential(*block)
