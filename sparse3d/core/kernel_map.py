"""Kernel maps of sparse convolution: which input row each output row reads per tap.

A kernel map is output-stationary: ``nbr`` int32 [M, K] holds, for output row o and tap
k (KRSC order, ``k = (k0 * K1 + k1) * K2 + k2``), the input row at
``out * stride - padding + k * dilation``, or -1. Submanifold maps use the input sites as
outputs; regular (dilating) maps first find every output site reached by an input
and their map in one pass (:func:`conv_map`); inverse convs use the transposed map
(:func:`invert_kernel_map`). Input sites must be unique (SparseVoxels guarantees it; the
CPU kernels raise on duplicates).
"""

from dataclasses import dataclass, field

import torch
from torch import Tensor

from sparse3d._native import HAS_NATIVE
from sparse3d.core.coords import Triple, coord_keys, keys_to_coords


def kernel_map(
    in_coords: Tensor,
    out_coords: Tensor,
    in_shape: Triple,
    out_shape: Triple,
    kernel: Triple,
    stride: Triple,
    padding: Triple,
    dilation: Triple,
) -> Tensor:
    """Output-stationary kernel map.

    Args:
        in_coords: int32 [N, 4] (batch, c0, c1, c2), unique, inside ``in_shape``.
        out_coords: int32 [M, 4], inside ``out_shape``.
        in_shape, out_shape: spatial shapes (S0, S1, S2) of the two grids.
        kernel, stride, padding, dilation: per axis.

    Returns:
        int32 [M, K] input rows (-1 where the tap finds no input), K = prod(kernel).
    """
    args = (list(in_shape), list(out_shape), list(kernel), list(stride), list(padding), list(dilation))
    if HAS_NATIVE:
        return torch.ops.sparse3d.kernel_map(in_coords, out_coords, *args)
    return kernel_map_ref(in_coords, out_coords, *args)


def kernel_map_ref(in_coords, out_coords, in_shape, out_shape, kernel, stride, padding, dilation) -> Tensor:
    """Pure-torch reference of :func:`kernel_map` (sorted keys + searchsorted)."""
    offsets = _tap_offsets(kernel, in_coords.device)  # [K, 3]
    taps = offsets * torch.tensor(dilation, device=in_coords.device)
    src = out_coords[:, None, 1:].long() * torch.tensor(stride, device=in_coords.device)
    src = src - torch.tensor(padding, device=in_coords.device) + taps  # [M, K, 3]
    inside = ((src >= 0) & (src < torch.tensor(in_shape, device=in_coords.device))).all(-1)
    batch = out_coords[:, None, :1].long().expand(-1, offsets.shape[0], 1)
    query = coord_keys(torch.cat([batch, src], -1).reshape(-1, 4), in_shape).reshape(inside.shape)
    keys, order = coord_keys(in_coords, in_shape).sort()
    if keys.numel() == 0:
        return torch.full(inside.shape, -1, dtype=torch.int32, device=in_coords.device)
    pos = torch.searchsorted(keys, query).clamp(max=keys.numel() - 1)
    hit = inside & (keys[pos] == query)
    return torch.where(hit, order[pos], -1).int()


def conv_map(
    coords: Tensor,
    in_shape: Triple,
    out_shape: Triple,
    kernel: Triple,
    stride: Triple,
    padding: Triple,
    dilation: Triple,
    transposed: bool = False,
) -> tuple[Tensor, Tensor]:
    """Output sites of a regular (dilating) sparse conv and its kernel map.

    An output site exists iff at least one input reaches it through some tap. In a regular
    conv input ``out * stride - padding + k * dilation`` reaches output ``out`` through tap
    k; in a ``transposed`` (coordinate-generating) conv input ``c`` reaches
    ``c * stride - padding + k * dilation``.

    Args:
        coords: int32 [N, 4] (batch, c0, c1, c2) unique input sites inside ``in_shape``.
        in_shape, out_shape, kernel, stride, padding, dilation: as in :func:`kernel_map`.
        transposed: the transposed conv's map.

    Returns:
        out_coords: int32 [M, 4] inside ``out_shape``, sorted by (batch, c0, c1, c2); M may
            be 0 (no input reaches an output site).
        nbr: int32 [M, K] kernel map from ``coords`` to ``out_coords``.
    """
    args = (list(in_shape), list(out_shape), list(kernel), list(stride), list(padding), list(dilation))
    if HAS_NATIVE:
        return torch.ops.sparse3d.conv_map(coords, *args, transposed)
    return conv_map_ref(coords, *args, transposed)


def conv_map_ref(coords, in_shape, out_shape, kernel, stride, padding, dilation, transposed=False) -> tuple[Tensor, Tensor]:
    """Pure-torch reference of :func:`conv_map` (candidates, ``torch.unique``, then
    :func:`kernel_map_ref`, or for a transposed conv the candidates themselves)."""
    device = coords.device
    taps = _tap_offsets(kernel, device) * torch.tensor(dilation, device=device)  # [K, 3]
    if transposed:
        return _transposed_conv_map_ref(coords, out_shape, taps, stride, padding)
    num = coords[:, None, 1:].long() + torch.tensor(padding, device=device) - taps  # [N, K, 3]
    step = torch.tensor(stride, device=device)
    out = torch.div(num, step, rounding_mode="floor")
    valid = ((num >= 0) & (num % step == 0) & (out < torch.tensor(out_shape, device=device))).all(-1)
    batch = coords[:, None, :1].long().expand(-1, taps.shape[0], 1)
    cand = torch.cat([batch, out], -1)[valid]
    out_coords = keys_to_coords(torch.unique(coord_keys(cand, out_shape)), out_shape)
    nbr = kernel_map_ref(coords, out_coords, in_shape, out_shape, kernel, stride, padding, dilation)
    return out_coords, nbr


def _transposed_conv_map_ref(coords, out_shape, taps, stride, padding) -> tuple[Tensor, Tensor]:
    """Sites ``c * stride - padding + k * dilation`` of every input and tap (``taps`` holds
    ``k * dilation``), and nbr[o, k] = the input that generated o through tap k."""
    device = coords.device
    out = coords[:, None, 1:].long() * torch.tensor(stride, device=device) - torch.tensor(padding, device=device) + taps
    valid = ((out >= 0) & (out < torch.tensor(out_shape, device=device))).all(-1)  # [N, K]
    batch = coords[:, None, :1].long().expand(-1, taps.shape[0], 1)
    keys = coord_keys(torch.cat([batch, out], -1)[valid], out_shape)
    unique = torch.unique(keys)
    rows, tap = valid.nonzero(as_tuple=True)
    nbr = torch.full((unique.numel(), taps.shape[0]), -1, dtype=torch.int32, device=device)
    nbr[torch.searchsorted(unique, keys), tap] = rows.int()
    return keys_to_coords(unique, out_shape), nbr


def invert_kernel_map(nbr: Tensor, n_in: int) -> Tensor:
    """Transposed kernel map: ``inv[i, k] = o`` where ``nbr[o, k] = i``, else -1.

    Args:
        nbr: int32 [M, K] kernel map (each (input, tap) used by at most one output, as in
            every convolution map).
        n_in: number of input rows N.

    Returns:
        int32 [N, K].
    """
    if HAS_NATIVE:
        return torch.ops.sparse3d.invert_kernel_map(nbr, n_in)
    return invert_kernel_map_ref(nbr, n_in)


def invert_kernel_map_ref(nbr: Tensor, n_in: int) -> Tensor:
    """Pure-torch reference of :func:`invert_kernel_map`."""
    inv = torch.full((n_in, nbr.shape[1]), -1, dtype=torch.int32, device=nbr.device)
    rows, taps = (nbr >= 0).nonzero(as_tuple=True)
    inv[nbr[rows, taps].long(), taps] = rows.int()
    return inv


def _tap_offsets(kernel: Triple, device: torch.device) -> Tensor:
    """int64 [K, 3] tap indices (k0, k1, k2) in KRSC order."""
    axes = [torch.arange(k, device=device) for k in kernel]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


@dataclass
class KernelMap:
    """A convolution's kernel map and the two voxel sets it connects.

    The transposed map (for input gradients and inverse convs) is built on first use.
    """

    nbr: Tensor
    """int32 [M, K]: input row per (output row, tap), or -1."""
    out_coords: Tensor
    """int32 [M, 4] (batch, c0, c1, c2) output sites."""
    out_shape: Triple
    """Spatial shape of the output grid."""
    n_in: int
    """Number of input rows N."""
    submanifold: bool
    """True when the outputs are the inputs (then the transposed map is nbr mirrored)."""
    out_coord_set: int
    """Coordinate-set id of the output sites in their VoxelCache."""
    _inverse: Tensor | None = field(default=None, repr=False)

    def inverse(self) -> Tensor:
        """int32 [N, K]: output row per (input row, tap), or -1 (cached)."""
        if self._inverse is None:
            self._inverse = invert_kernel_map(self.nbr, self.n_in)
        return self._inverse

    def gradient_map(self) -> Tensor:
        """The map to pass as :func:`sparse3d.core.conv.sparse_conv`'s ``inv``: ``nbr``
        itself for a submanifold map (tap k from o to i is tap K-1-k from i to o, and
        sparse_conv reads it so, keeping no second map), else :meth:`inverse`."""
        return self.nbr if self.submanifold else self.inverse()


if HAS_NATIVE:

    @torch.library.register_fake("sparse3d::kernel_map")
    def _(in_coords, out_coords, in_shape, out_shape, kernel, stride, padding, dilation):
        return out_coords.new_empty(out_coords.shape[0], kernel[0] * kernel[1] * kernel[2])

    @torch.library.register_fake("sparse3d::conv_map")
    def _(coords, in_shape, out_shape, kernel, stride, padding, dilation, transposed=False):
        n_out = torch.library.get_ctx().new_dynamic_size()
        return coords.new_empty(n_out, 4), coords.new_empty(n_out, kernel[0] * kernel[1] * kernel[2])

    @torch.library.register_fake("sparse3d::invert_kernel_map")
    def _(nbr, n_in):
        return nbr.new_empty(n_in, nbr.shape[1])
