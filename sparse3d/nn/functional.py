"""Functional sparse convolutions on SparseVoxels (spconv 2.x semantics).

Weights are KRSC ``[Cout, k0, k1, k2, Cin]``, spconv's layout, so checkpoints load by
parameter name. Tap ``(k0, k1, k2)`` reads the input at ``out * stride - padding + k *
dilation`` (cross-correlation, like ``F.conv3d`` with the weight permuted to
``[Cout, Cin, k0, k1, k2]``).
"""

import torch
from torch import Tensor

from sparse3d.core.conv import sparse_conv
from sparse3d.core.coords import Triple
from sparse3d.core.precision import bf16_inference
from sparse3d.core.sparse_voxels import IndiceRecord, SparseVoxels


def krsc_to_taps(weight: Tensor) -> Tensor:
    """KRSC weight [Cout, k0, k1, k2, Cin] -> per-tap weight [K, Cin, Cout]."""
    return weight.flatten(1, 3).permute(1, 2, 0).contiguous()


def _conv(x: SparseVoxels, weight: Tensor, bias: Tensor | None, nbr: Tensor, inverse) -> Tensor:
    """sparse_conv of x.feats with a KRSC weight (and bias); the map for the input gradient
    (``inverse()``: :meth:`KernelMap.gradient_map`, cached by the kernel map) is passed only
    when a gradient will be needed. Without one, under CPU autocast to bfloat16, features
    and weight go in as bfloat16 (float32 out; :mod:`sparse3d.core.precision`) when the
    output width is a multiple of 16, the width of the bf16 tiles (narrower layers would
    only pay the casts)."""
    needs_grad = torch.is_grad_enabled() and (x.feats.requires_grad or weight.requires_grad)
    if not needs_grad and x.feats.device.type == "cpu" and weight.shape[0] % 16 == 0 and bf16_inference():
        return sparse_conv(x.feats.bfloat16(), krsc_to_taps(weight.bfloat16()), nbr, None, bias)
    return sparse_conv(x.feats, krsc_to_taps(weight), nbr, inverse() if needs_grad else None, bias)


def subm_conv3d(x: SparseVoxels, weight: Tensor, bias: Tensor | None = None, dilation: Triple = (1, 1, 1)) -> SparseVoxels:
    """Submanifold conv: output sites = input sites; padding is ``k // 2 * dilation``.

    Args:
        x: input voxels, feats float [N, Cin].
        weight: float [Cout, k0, k1, k2, Cin], odd kernel sizes.
        bias: float [Cout] or None.
        dilation: per axis.

    Returns:
        SparseVoxels on the same sites (same coordinate set), feats float [N, Cout].
    """
    _check_weight(weight, x)
    kmap = x.submanifold_map(tuple(weight.shape[1:4]), dilation)
    return x.replace_feats(_conv(x, weight, bias, kmap.nbr, kmap.gradient_map))


def sparse_conv3d(
    x: SparseVoxels,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Triple = (1, 1, 1),
    padding: Triple = (0, 0, 0),
    dilation: Triple = (1, 1, 1),
    indice_key: str | None = None,
) -> SparseVoxels:
    """Regular (dilating) sparse conv: an output site exists iff some input reaches it.

    Args:
        x: input voxels, feats float [N, Cin].
        weight: float [Cout, k0, k1, k2, Cin].
        bias: float [Cout] or None.
        stride, padding, dilation: per axis; the output shape is
            ``(S + 2p - d(k - 1) - 1) // s + 1`` (ValueError if an axis would be empty).
        indice_key: registers this conv so that ``sparse_inverse_conv3d`` with the same key
            restores exactly the input sites of ``x``.

    Returns:
        SparseVoxels on the output sites (sorted by batch, c0, c1, c2; possibly none),
        feats float [M, Cout].
    """
    _check_weight(weight, x)
    kernel = tuple(weight.shape[1:4])
    kmap = x.conv_map(kernel, stride, padding, dilation)
    if indice_key is not None:
        _register_indice_key(x, indice_key, kmap)
    feats = _conv(x, weight, bias, kmap.nbr, kmap.gradient_map)
    return x.with_sites(kmap.out_coords, feats, kmap.out_shape, kmap.out_coord_set)


def sparse_conv_transpose3d(
    x: SparseVoxels,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Triple = (1, 1, 1),
    padding: Triple = (0, 0, 0),
    dilation: Triple = (1, 1, 1),
    output_padding: Triple = (0, 0, 0),
) -> SparseVoxels:
    """Transposed (coordinate-generating) sparse conv, spconv's SparseConvTranspose3d: input
    site c feeds output ``c * stride - padding + k * dilation`` through tap k (the adjoint
    of :func:`sparse_conv3d`, as torch's ``conv_transpose3d``); an output site exists iff
    some input reaches it.

    Args:
        x: input voxels, feats float [N, Cin].
        weight: float [Cout, k0, k1, k2, Cin] (KRSC, as spconv).
        bias: float [Cout] or None.
        stride, padding, dilation, output_padding: per axis; the output shape is
            ``(S - 1) s - 2p + d(k - 1) + output_padding + 1``.

    Returns:
        SparseVoxels on the output sites (sorted by batch, c0, c1, c2), feats float [M, Cout].
    """
    _check_weight(weight, x)
    kmap = x.conv_map(tuple(weight.shape[1:4]), stride, padding, dilation, True, output_padding)
    feats = _conv(x, weight, bias, kmap.nbr, kmap.gradient_map)
    return x.with_sites(kmap.out_coords, feats, kmap.out_shape, kmap.out_coord_set)


def sparse_inverse_conv3d(x: SparseVoxels, weight: Tensor, indice_key: str, bias: Tensor | None = None) -> SparseVoxels:
    """Inverse of the strided conv registered under ``indice_key``: maps its output sites
    back to exactly its input sites, through the transposed kernel map.

    Args:
        x: voxels on the output sites of that conv, feats float [M, Cin].
        weight: float [Cout, k0, k1, k2, Cin], same kernel size as that conv.
        indice_key: the key the strided conv was registered under.
        bias: float [Cout] or None.

    Returns:
        SparseVoxels on that conv's input sites (same coordinate set), feats float [N, Cout].
    """
    _check_weight(weight, x)
    record = x.cache.indice_keys.get(indice_key)
    if record is None:
        known = sorted(x.cache.indice_keys)
        raise ValueError(f"sparse_inverse_conv3d: no strided conv registered under indice_key {indice_key!r}; known keys: {known}")
    kmap = record.kmap
    if x.coord_set != kmap.out_coord_set:
        raise ValueError(
            f"sparse_inverse_conv3d: input sites are not the output sites of the conv registered "
            f"under {indice_key!r} ({x.num_voxels} vs {kmap.nbr.shape[0]} voxels)"
        )
    if weight.shape[1] * weight.shape[2] * weight.shape[3] != kmap.nbr.shape[1]:
        raise ValueError(
            f"sparse_inverse_conv3d: kernel {tuple(weight.shape[1:4])} differs from the "
            f"{kmap.nbr.shape[1]}-tap conv registered under {indice_key!r}"
        )
    feats = _conv(x, weight, bias, kmap.inverse(), lambda: kmap.nbr)
    return x.with_sites(record.in_coords, feats, record.in_shape, record.in_coord_set)


def _register_indice_key(x: SparseVoxels, indice_key: str, kmap) -> None:
    previous = x.cache.indice_keys.get(indice_key)
    if previous is not None and previous.kmap is not kmap:
        raise ValueError(f"sparse_conv3d: indice_key {indice_key!r} is already used by another strided conv")
    x.cache.indice_keys[indice_key] = IndiceRecord(x.coords, x.spatial_shape, x.coord_set, kmap)


def _check_weight(weight: Tensor, x: SparseVoxels) -> None:
    if weight.dim() != 5 or weight.shape[4] != x.feats.shape[1]:
        raise ValueError(
            f"sparse conv weight must be KRSC [Cout, k0, k1, k2, Cin] with Cin = {x.feats.shape[1]}, "
            f"got {list(weight.shape)}"
        )
