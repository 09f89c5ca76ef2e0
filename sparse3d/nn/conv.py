"""Sparse convolution layers, spconv 2.x compatible: same arguments, KRSC weights
``[Cout, k0, k1, k2, Cin]`` (2D: ``[Cout, kH, kW, Cin]``), same output-site rules and
output-shape formula, so OpenPCDet / CenterPoint state dicts load by parameter name."""

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from sparse3d.core.coords import Triple, as_ints
from sparse3d.core.sparse_voxels import SparseVoxels
from sparse3d.nn import functional as F
from sparse3d.nn.sequential import SparseModule


class _SparseConv(SparseModule):
    """Holds the KRSC weight and optional bias shared by the conv kinds.

    3D layers (``ndim = 3``) take voxels on any grid. 2D layers (``ndim = 2``, spconv's
    SubMConv2d / SparseConv2d / SparseInverseConv2d, weights ``[Cout, kH, kW, Cin]``) take
    voxels on a plane, spatial shape ``(1, H, W)`` with coordinates (batch, 0, y, x), and run
    as the 3D conv with a leading kernel size 1 (``from_spconv`` reads a 2D
    ``SparseConvTensor`` that way).
    """

    ndim: ClassVar[int] = 3

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
        self.kernel_size = as_ints(kernel_size, self.ndim, "kernel_size")
        self.stride = as_ints(stride, self.ndim, "stride")
        self.padding = as_ints(padding, self.ndim, "padding")
        self.dilation = as_ints(dilation, self.ndim, "dilation")
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

    def _weight3d(self) -> torch.Tensor:
        """The KRSC weight as [Cout, k0, k1, k2, Cin] (2D layers: k0 = 1)."""
        return self.weight if self.ndim == 3 else self.weight.unsqueeze(1)

    def _lift(self, values: tuple[int, ...], plane_value: int) -> Triple:
        """A per-axis setting as a 3D triple (2D layers: ``plane_value`` on the plane axis)."""
        return values if self.ndim == 3 else (plane_value, *values)  # type: ignore[return-value]

    def _checked(self, x: SparseVoxels) -> SparseVoxels:
        if self.ndim == 2 and x.spatial_shape[0] != 1:
            raise ValueError(
                f"{type(self).__name__}: 2D sparse convs take voxels on a plane, spatial_shape (1, H, W) with "
                f"coordinates (batch, 0, y, x), got spatial_shape {tuple(x.spatial_shape)}"
            )
        return x


class SubMConv3d(_SparseConv):
    """Submanifold conv: output sites = input sites; ``padding`` and ``stride`` are ignored
    (spconv forces padding to ``k // 2 * dilation``). Odd kernel sizes only."""

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        return F.subm_conv3d(self._checked(x), self._weight3d(), self.bias, self._lift(self.dilation, 1))


class SparseConv3d(_SparseConv):
    """Regular (dilating) sparse conv; with ``indice_key`` an inverse conv can undo it."""

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        return F.sparse_conv3d(
            self._checked(x), self._weight3d(), self.bias, self._lift(self.stride, 1), self._lift(self.padding, 0),
            self._lift(self.dilation, 1), self.indice_key,
        )


class SparseConvTranspose3d(_SparseConv):
    """Transposed sparse conv that generates new sites (spconv's SparseConvTranspose3d):
    input c feeds ``c * stride - padding + k * dilation``. Unlike SparseInverseConv3d it
    needs no earlier strided conv; its output grid has ``(S - 1) s - 2p + d(k - 1) +
    output_padding + 1`` cells per axis."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        output_padding: int | Sequence[int] = 0,
        bias: bool = True,
        indice_key: str | None = None,
    ):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, bias, indice_key)
        self.output_padding = as_ints(output_padding, self.ndim, "output_padding")

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        return F.sparse_conv_transpose3d(
            self._checked(x), self._weight3d(), self.bias, self._lift(self.stride, 1), self._lift(self.padding, 0),
            self._lift(self.dilation, 1), self._lift(self.output_padding, 0),
        )


class SparseInverseConv3d(_SparseConv):
    """Inverse of the SparseConv3d registered under ``indice_key``: restores its input sites."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int], indice_key: str, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, bias=bias, indice_key=indice_key)

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        return F.sparse_inverse_conv3d(self._checked(x), self._weight3d(), self.indice_key, self.bias)


class SubMConv2d(SubMConv3d):
    """SubMConv3d on a plane (see :class:`_SparseConv`): weight [Cout, kH, kW, Cin]."""

    ndim = 2


class SparseConv2d(SparseConv3d):
    """SparseConv3d on a plane (see :class:`_SparseConv`): weight [Cout, kH, kW, Cin]."""

    ndim = 2


class SparseConvTranspose2d(SparseConvTranspose3d):
    """SparseConvTranspose3d on a plane (see :class:`_SparseConv`): weight [Cout, kH, kW, Cin]."""

    ndim = 2


class SparseInverseConv2d(SparseInverseConv3d):
    """SparseInverseConv3d on a plane (see :class:`_SparseConv`): weight [Cout, kH, kW, Cin]."""

    ndim = 2
