"""VoxelResBackBone8x: the CenterPoint / OpenPCDet sparse residual encoder (16/32/64/128
channels, 8x downsampling), with OpenPCDet's module names so its checkpoints load as-is.

The nuScenes voxel-0.075 configuration has a 1440 x 1440 x 40 (x, y, z) grid; like
OpenPCDet the encoder works in (z, y, x) order on a (41, 1440, 1440) grid internally, so
that the KRSC weights of its (3, 1, 1) down-convs mean the same axes as in OpenPCDet.
"""

from dataclasses import dataclass
from functools import partial

from torch import Tensor, nn

from sparse3d.core.coords import conv_output_shape
from sparse3d.core.sparse_voxels import SparseVoxels
from sparse3d.nn.bev import scatter_to_bev
from sparse3d.nn.conv import SparseConv3d, SubMConv3d
from sparse3d.nn.norm import SparseBatchNorm1d
from sparse3d.nn.sequential import SparseModule, SparseSequential

# OpenPCDet's norm (BatchNorm1d over voxel features, eps 1e-3, momentum 0.01), with
# thread-count independent training statistics.
_norm = partial(SparseBatchNorm1d, eps=1e-3, momentum=0.01)


class SparseBasicBlock(SparseModule):
    """Residual block of two 3x3x3 submanifold convs (with bias, as OpenPCDet) + BN + ReLU
    (OpenPCDet's parameter-free ``relu`` module is folded into the batch norms)."""

    def __init__(self, channels: int, indice_key: str | None = None):
        super().__init__()
        self.conv1 = SubMConv3d(channels, channels, 3, padding=1, bias=True, indice_key=indice_key)
        self.bn1 = _norm(channels)
        self.conv2 = SubMConv3d(channels, channels, 3, padding=1, bias=True, indice_key=indice_key)
        self.bn2 = _norm(channels)

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        out = self.conv1(x)
        out = out.replace_feats(self.bn1.normalize(out.feats, relu=True))
        out = self.conv2(out)
        # relu(bn2(out) + x) in one pass over the features
        return out.replace_feats(self.bn2.normalize(out.feats, residual=x.feats, relu=True))


def _down_block(cin: int, cout: int, padding, indice_key: str) -> SparseSequential:
    """OpenPCDet's post_act_block with conv_type 'spconv': k3 s2 conv, BN, ReLU."""
    conv = SparseConv3d(cin, cout, 3, stride=2, padding=padding, bias=False, indice_key=indice_key)
    return SparseSequential(conv, _norm(cout), nn.ReLU())


@dataclass
class VoxelEncoderOutput:
    """Features of VoxelResBackBone8x, all in (batch, z, y, x) order."""

    encoded: SparseVoxels
    """Output of conv_out: the last stage's channels (128) at stride 8 (x, y), e.g. (2, 180, 180) for nuScenes."""
    multi_scale: dict[str, SparseVoxels]
    """x_conv1 .. x_conv4 (strides 1, 2, 4, 8), as OpenPCDet's multi_scale_3d_features."""

    def bev(self) -> Tensor:
        """Height-compressed BEV map float [B, C * D, Y, X], channel c * D + d (OpenPCDet's
        HeightCompression), e.g. [B, 256, 180, 180] for nuScenes."""
        return scatter_to_bev(self.encoded, axes="zyx")


class VoxelResBackBone8x(nn.Module):
    """Sparse residual encoder with OpenPCDet's structure and state-dict names.

    Args:
        in_channels: voxel feature channels (5 for nuScenes MeanVFE: x, y, z, intensity, dt).
        grid_size: voxel grid (X, Y, Z), e.g. (1440, 1440, 40) for 0.075 x 0.075 x 0.2 m.
        channels: widths of the four stages (OpenPCDet: 16, 32, 64, 128); conv_out keeps the last.

    Examples:
        >>> enc = VoxelResBackBone8x(5, (1440, 1440, 40))
        >>> enc.sparse_shape
        (41, 1440, 1440)
    """

    def __init__(self, in_channels: int, grid_size: tuple[int, int, int], channels: tuple[int, int, int, int] = (16, 32, 64, 128)):
        super().__init__()
        if len(channels) != 4 or min(channels) < 1:
            raise ValueError(f"VoxelResBackBone8x: channels must be 4 positive widths, got {channels}")
        self.grid_size = tuple(int(g) for g in grid_size)
        self.sparse_shape = (self.grid_size[2] + 1, self.grid_size[1], self.grid_size[0])
        c1, c2, c3, c4 = channels
        self.out_channels = c4
        self.conv_input = SparseSequential(
            SubMConv3d(in_channels, c1, 3, padding=1, bias=False, indice_key="subm1"), _norm(c1), nn.ReLU()
        )
        self.conv1 = SparseSequential(SparseBasicBlock(c1, "res1"), SparseBasicBlock(c1, "res1"))
        self.conv2 = SparseSequential(_down_block(c1, c2, 1, "spconv2"), SparseBasicBlock(c2, "res2"), SparseBasicBlock(c2, "res2"))
        self.conv3 = SparseSequential(_down_block(c2, c3, 1, "spconv3"), SparseBasicBlock(c3, "res3"), SparseBasicBlock(c3, "res3"))
        self.conv4 = SparseSequential(
            _down_block(c3, c4, (0, 1, 1), "spconv4"), SparseBasicBlock(c4, "res4"), SparseBasicBlock(c4, "res4")
        )
        self.conv_out = SparseSequential(
            SparseConv3d(c4, c4, (3, 1, 1), stride=(2, 1, 1), padding=0, bias=False, indice_key="spconv_down2"),
            _norm(c4),
            nn.ReLU(),
        )
        try:
            self.output_shape
        except ValueError as err:
            raise ValueError(f"VoxelResBackBone8x: the grid {self.grid_size} (x, y, z) is too small for its downsamplings "
                             f"(z needs at least 24 cells): {err}") from None

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """Spatial shape (Z, Y, X) of ``encoded``, e.g. (2, 180, 180) for nuScenes."""
        shape = self.sparse_shape
        for conv in (self.conv2[0][0], self.conv3[0][0], self.conv4[0][0], self.conv_out[0]):
            shape = conv_output_shape(shape, conv.kernel_size, conv.stride, conv.padding, conv.dilation)
        return shape

    @property
    def bev_channels(self) -> int:
        """Channels of :meth:`VoxelEncoderOutput.bev`: output channels x height cells."""
        return self.out_channels * self.output_shape[0]

    def to_zyx(self, voxels: SparseVoxels) -> SparseVoxels:
        """(batch, x, y, z) voxels on ``grid_size`` -> (batch, z, y, x) on ``sparse_shape``."""
        if tuple(voxels.spatial_shape) != self.grid_size:
            raise ValueError(f"VoxelResBackBone8x: voxels must be on the grid {self.grid_size} (x, y, z), got {voxels.spatial_shape}")
        coords = voxels.coords[:, [0, 3, 2, 1]].contiguous()
        return SparseVoxels(coords, voxels.feats, self.sparse_shape, voxels.batch_size, check=False)

    def forward_zyx(self, x: SparseVoxels) -> VoxelEncoderOutput:
        """Runs the encoder on (batch, z, y, x) voxels on ``sparse_shape`` (OpenPCDet's input)."""
        x = self.conv_input(x)
        x_conv1 = self.conv1(x)
        x_conv2 = self.conv2(x_conv1)
        x_conv3 = self.conv3(x_conv2)
        x_conv4 = self.conv4(x_conv3)
        multi_scale = {"x_conv1": x_conv1, "x_conv2": x_conv2, "x_conv3": x_conv3, "x_conv4": x_conv4}
        return VoxelEncoderOutput(self.conv_out(x_conv4), multi_scale)

    def forward(self, voxels: SparseVoxels) -> VoxelEncoderOutput:
        """Encodes (batch, x, y, z) voxels on ``grid_size``; feats float [N, in_channels]."""
        return self.forward_zyx(self.to_zyx(voxels))
