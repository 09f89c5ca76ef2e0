"""Voxel coordinates: validation, int64 linear keys and convolution output shapes.

Coordinates are int32 ``[N, 4]`` rows ``(batch, c0, c1, c2)`` indexed against a spatial
shape ``(S0, S1, S2)`` in the same axis order (``SparseVoxels`` uses (x, y, z); the
OpenPCDet encoder uses (z, y, x)). Keys are ``((b * S0 + c0) * S1 + c1) * S2 + c2`` in
int64, so no volume is limited to 2^31 cells and sorting keys sorts voxels by
(batch, c0, c1, c2).
"""

from collections.abc import Sequence

import torch
from torch import Tensor

Triple = tuple[int, int, int]


def as_triple(value: int | Sequence[int], name: str) -> Triple:
    """Returns ``value`` as three ints (an int is repeated), or raises ValueError."""
    return as_ints(value, 3, name)  # type: ignore[return-value]


def as_ints(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    """Returns ``value`` as ``n`` ints (an int is repeated), or raises ValueError."""
    if isinstance(value, int):
        return (value,) * n
    values = tuple(int(v) for v in value)
    if len(values) != n:
        raise ValueError(f"{name} must be an int or {n} ints, got {value!r}")
    return values


def coord_keys(coords: Tensor, spatial_shape: Sequence[int]) -> Tensor:
    """Linear keys of voxel coordinates.

    Args:
        coords: int32 [N, 4] (batch, c0, c1, c2), inside ``spatial_shape``.
        spatial_shape: (S0, S1, S2).

    Returns:
        int64 [N], ``((b * S0 + c0) * S1 + c1) * S2 + c2``.
    """
    c = coords.long()
    s0, s1, s2 = (int(s) for s in spatial_shape)
    return ((c[:, 0] * s0 + c[:, 1]) * s1 + c[:, 2]) * s2 + c[:, 3]


def keys_to_coords(keys: Tensor, spatial_shape: Sequence[int]) -> Tensor:
    """Inverse of :func:`coord_keys`: int64 [N] keys -> int32 [N, 4] (batch, c0, c1, c2)."""
    s0, s1, s2 = (int(s) for s in spatial_shape)
    c2 = keys % s2
    rest = keys // s2
    c1 = rest % s1
    rest = rest // s1
    c0 = rest % s0
    return torch.stack([rest // s0, c0, c1, c2], dim=1).int()


def conv_output_shape(
    in_shape: Sequence[int], kernel: Triple, stride: Triple, padding: Triple, dilation: Triple
) -> Triple:
    """Spatial shape after a regular sparse conv (spconv's and torch's formula).

    ``(in + 2p - d(k - 1) - 1) // s + 1`` per axis; raises ValueError when any axis would
    have no cell.
    """
    out = tuple(
        (i + 2 * p - d * (k - 1) - 1) // s + 1
        for i, k, s, p, d in zip(in_shape, kernel, stride, padding, dilation)
    )
    if min(out) < 1:
        raise ValueError(
            f"sparse conv output shape {out} has an empty axis: input shape {tuple(in_shape)}, "
            f"kernel {kernel}, stride {stride}, padding {padding}, dilation {dilation}"
        )
    return out  # type: ignore[return-value]


def transposed_conv_output_shape(
    in_shape: Sequence[int], kernel: Triple, stride: Triple, padding: Triple, dilation: Triple, output_padding: Triple
) -> Triple:
    """Spatial shape after a transposed sparse conv (spconv's and torch's formula).

    ``(in - 1) s - 2p + d(k - 1) + output_padding + 1`` per axis; raises ValueError when any
    axis would have no cell.
    """
    out = tuple(
        (i - 1) * s - 2 * p + d * (k - 1) + op + 1
        for i, k, s, p, d, op in zip(in_shape, kernel, stride, padding, dilation, output_padding)
    )
    if min(out) < 1:
        raise ValueError(
            f"transposed sparse conv output shape {out} has an empty axis: input shape {tuple(in_shape)}, "
            f"kernel {kernel}, stride {stride}, padding {padding}, dilation {dilation}"
        )
    return out  # type: ignore[return-value]


def validate_coords(coords: Tensor, spatial_shape: Sequence[int], batch_size: int, what: str) -> None:
    """Raises TypeError / ValueError naming ``what`` unless ``coords`` is a valid voxel set.

    Valid: int32 [N, 4]; batch in [0, batch_size); every spatial coordinate in
    [0, S); no two rows equal.
    """
    if not isinstance(coords, Tensor):
        raise TypeError(f"{what}: coords must be a torch.Tensor, got {type(coords).__name__}")
    if coords.dtype != torch.int32:
        raise TypeError(f"{what}: coords must be int32 (batch, c0, c1, c2), got {coords.dtype}")
    if coords.dim() != 2 or coords.shape[1] != 4:
        raise ValueError(f"{what}: coords must have shape [N, 4], got {list(coords.shape)}")
    if len(spatial_shape) != 3 or min(spatial_shape) < 1:
        raise ValueError(f"{what}: spatial_shape must be 3 positive ints, got {tuple(spatial_shape)}")
    if coords.shape[0] == 0:
        return
    batch = coords[:, 0]
    if int(batch.min()) < 0 or int(batch.max()) >= batch_size:
        raise ValueError(
            f"{what}: batch indices must lie in [0, {batch_size}), got range "
            f"[{int(batch.min())}, {int(batch.max())}]"
        )
    for axis, size in enumerate(spatial_shape):
        col = coords[:, axis + 1]
        lo, hi = int(col.min()), int(col.max())
        if lo < 0 or hi >= size:
            raise ValueError(
                f"{what}: coordinate column {axis + 1} must lie in [0, {size}) "
                f"(spatial_shape {tuple(spatial_shape)}), got range [{lo}, {hi}]"
            )
    keys = coord_keys(coords, spatial_shape)
    sorted_keys = keys.sort().values
    dup = (sorted_keys[1:] == sorted_keys[:-1]).nonzero()
    if dup.numel():
        first = keys_to_coords(sorted_keys[dup[0]], spatial_shape)[0].tolist()
        raise ValueError(
            f"{what}: {dup.numel()} duplicate coordinate rows, e.g. {first}; merge them "
            "first (sparse3d.core.voxelize or unique_coords)"
        )
