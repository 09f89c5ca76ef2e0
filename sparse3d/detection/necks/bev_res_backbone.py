"""OpenPCDet's BaseBEVResBackbone (DSVT's 2D backbone) with its module names: the levels of
:class:`sparse3d.detection.necks.bev_backbone.BaseBEVBackbone`, built from residual basic
blocks instead of plain 3x3 convs, each level resampled to the output resolution by its
deblock and the levels concatenated.

Per level i (``blocks.{i}``): a first :class:`BasicBlock` of stride ``layer_strides[i]``
with a 1x1 projection shortcut (always, even at stride 1 with equal widths, as the
reference), then ``layer_nums[i]`` identity-shortcut blocks. ``deblocks.{i}`` is
:func:`sparse3d.detection.necks.bev_backbone.deblock` (an upsample stride below 1, such as
DSVT's 0.5, is a strided conv).

All layers are the deterministic ones of :mod:`sparse3d.nn` (results do not depend on the
thread count); batch norms have OpenPCDet's eps 1e-3 and momentum 0.01.
"""

from functools import partial

from torch import Tensor, nn

from sparse3d.detection.necks.bev_backbone import BevLevel, LevelledBevBackbone
from sparse3d.nn.conv2d import Conv2d
from sparse3d.nn.norm import BatchNorm2d

_norm = partial(BatchNorm2d, eps=1e-3, momentum=0.01)


class BasicBlock(nn.Module):
    """ResNet basic block (OpenPCDet ``backbones_2d.base_bev_backbone.BasicBlock``):
    relu2(bn2(conv2(relu1(bn1(conv1(x))))) + shortcut(x)), 3x3 convs without bias, the first
    one strided; shortcut = x, or ``downsample_layer`` = [1x1 conv of the stride, BN].

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the first conv (and of the projection).
        downsample: use the projection shortcut (needed when the stride or the width changes).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, downsample: bool = False):
        super().__init__()
        if not downsample and (stride != 1 or in_channels != out_channels):
            raise ValueError(
                f"BasicBlock: an identity shortcut needs stride 1 and equal widths, got stride {stride}, "
                f"{in_channels} -> {out_channels} channels"
            )
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _norm(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = _norm(out_channels)
        self.relu2 = nn.ReLU()
        self.downsample_layer = (
            nn.Sequential(Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), _norm(out_channels))
            if downsample else None
        )

    def forward(self, x: Tensor) -> Tensor:
        """float [B, in_channels, H, W] -> float [B, out_channels, ceil(H / stride), ceil(W / stride)]."""
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample_layer is None else self.downsample_layer(x)
        return self.relu2(out + shortcut)


class BaseBEVResBackbone(LevelledBevBackbone):
    """Multi-level residual BEV backbone; float [B, in_channels, H, W] ->
    [B, config.out_channels, H / s, W / s] with s = ``config.stride`` (2 for DSVT's nuScenes
    config: levels at strides 1, 2, 4 of the pillar grid, resampled by 1/2, 1, 2). H and W
    must be multiples of the product of the layer strides and of s, so that the levels meet.

    Args:
        config: the levels (OpenPCDet's BACKBONE_2D keys; no extra fields).
        in_channels: channels of the input BEV map (DSVT: its width x the pillar grid's
            height cells, i.e. 128).

    Examples:
        >>> config = BevBackboneConfig(layer_nums=(1, 2, 2), layer_strides=(1, 2, 2), num_filters=(128, 128, 256),
        ...                            upsample_strides=(0.5, 1, 2), num_upsample_filters=(128, 128, 128))
        >>> net = BaseBEVResBackbone(config, 128).eval()
        >>> net(torch.zeros(1, 128, 16, 16)).shape
        torch.Size([1, 384, 8, 8])
    """

    def level_block(self, level: BevLevel) -> nn.Sequential:
        first = BasicBlock(level.in_channels, level.filters, level.stride, downsample=True)
        return nn.Sequential(first, *(BasicBlock(level.filters, level.filters) for _ in range(level.layers)))
