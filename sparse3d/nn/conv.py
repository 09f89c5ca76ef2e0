"""Sparse convolution layers, spconv 2.x compatible: same arguments, KRSC weights
``[Cout, k0, k1, k2, Cin]``, same output-site rules and output-shape formula, so OpenPCDet /
CenterPoint state dicts load by parameter name."""

import math
from collections.abc import Sequence

import torch
from torch import nn

from sparse3d.core.coords import as_triple
from sparse3d.core.sparse_voxels import SparseVoxels
from sparse3d.nn import functional as F
from sparse3d.nn.sequential import SparseModule


class _SparseConv3d(SparseModule):
    """Holds the KRSC weight and optional bias shared by the three conv kinds."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        bias: bool = True,
        indice_key: str | None = None,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = as_triple(kernel_size, "kernel_size")
        self.stride = as_triple(stride, "stride")
        self.padding = as_triple(padding, "padding")
        self.dilation = as_triple(dilation, "dilation")
        self.indice_key = indice_key
        self.weight = nn.Parameter(torch.empty(out_channels, *self.kernel_size, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform weights and uniform bias over the fan-in, as torch's ConvNd."""
        fan_in = self.in_channels * math.prod(self.kernel_size)
        bound = 1.0 / math.sqrt(fan_in) if fan_in else 0.0
        nn.init.uniform_(self.weight, -bound, bound)  # = kaiming_uniform(a=sqrt(5)) bound
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"bias={self.bias is not None}, indice_key={self.indice_key!r}")


class SubMConv3d(_SparseConv3d):
    """Submanifold conv: output sites = input sites; ``padding`` and ``stride`` are ignored
    (spconv forces padding to ``k // 2 * dilation``). Odd kernel sizes only."""

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        return F.subm_conv3d(x, self.weight, self.bias, self.dilation)


class SparseConv3d(_SparseConv3d):
    """Regular (dilating) sparse conv; with ``indice_key`` an inverse conv can undo it."""

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        return F.sparse_conv3d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.indice_key)


class SparseInverseConv3d(_SparseConv3d):
    """Inverse of the SparseConv3d registered under ``indice_key``: restores its input sites."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int], indice_key: str, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, bias=bias, indice_key=indice_key)

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        return F.sparse_inverse_conv3d(x, self.weight, self.indice_key, self.bias)

