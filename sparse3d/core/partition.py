"""Window and set partition of sparse voxels (DSVT's dynamic sparse windows).

A voxel (b, x, y, z) is shifted by ``shift`` and falls in window ``(x + shift) // window``
(per axis) of its sample, at in-window coordinates ``(x + shift) % window``. Inside each
window, voxels are ranked in two orders: y-major (y, x, z) for row 0 and x-major (x, y, z)
for row 1 of every output ("rotated sets"). A window with n voxels gets
``n_sets = ceil(n / S)`` sets of ``S`` slots, and slot t of its set j holds the voxel of
rank ``floor((j * S + t) * n / (n_sets * S))``: every voxel is used, none is dropped, and
the slack ``n_sets * S - n`` is filled by repeating voxels in consecutive slots. A slot
that repeats the previous slot of its set is masked as an attention key; a repeated voxel
takes its output from its first slot (``first_slot``), so the result is deterministic.

Sets are ordered by (batch, window x, window y, window z), then by j; both orderings give
the same sets-per-window, so row 0 and row 1 have the same number of sets.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sparse3d._native import HAS_NATIVE
from sparse3d.core.coords import Triple, as_triple


@dataclass
class SetPartition:
    """Result of :func:`set_partition` for one window shift. Row 0 is y-major, row 1 x-major."""

    set_inds: Tensor
    """int64 [2, M, S] voxel row held by each slot of each set."""
    key_mask: Tensor
    """bool [2, M, S] True where a slot repeats the previous slot of its set (ignored as a key)."""
    first_slot: Tensor
    """int64 [2, N] flat index into [M * S] of every voxel's first slot."""
    coords_in_window: Tensor
    """int32 [N, 3] (x, y, z) position of every voxel inside its window."""

    @property
    def num_sets(self) -> int:
        """Number of sets M (per ordering)."""
        return self.set_inds.shape[1]


def set_partition(
    coords: Tensor, sparse_shape: Sequence[int], window: Sequence[int], shift: Sequence[int], set_size: int
) -> SetPartition:
    """Partitions voxels into shifted windows, then into sets of ``set_size`` slots.

    Args:
        coords: int32 [N, 4] (batch, x, y, z), batch >= 0, inside ``sparse_shape``.
        sparse_shape: (X, Y, Z) grid size.
        window: (wx, wy, wz) window size in cells.
        shift: (sx, sy, sz) with 0 <= shift < window.
        set_size: S, slots per set.

    Returns:
        A :class:`SetPartition`.
    """
    shape, win, sh = _check_partition_args(coords, sparse_shape, window, shift, set_size)
    if HAS_NATIVE:
        out = torch.ops.sparse3d.set_partition(coords.contiguous(), list(shape), list(win), list(sh), int(set_size))
    else:
        out = set_partition_ref(coords, shape, win, sh, set_size)
    return SetPartition(*out)


def set_partition_ref(
    coords: Tensor, sparse_shape: Sequence[int], window: Sequence[int], shift: Sequence[int], set_size: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pure-torch reference of the ``sparse3d::set_partition`` op.

    Returns:
        set_inds int64 [2, M, S]; key_mask bool [2, M, S]; first_slot int64 [2, N];
        coords_in_window int32 [N, 3].
    """
    device, S = coords.device, int(set_size)
    c = coords.long()
    win = torch.tensor(list(window), device=device)
    n_win = (torch.tensor(list(sparse_shape), device=device) + win - 1) // win + 1
    shifted = c[:, 1:] + torch.tensor(list(shift), device=device)
    w, in_win = shifted // win, shifted % win
    win_id = ((c[:, 0] * n_win[0] + w[:, 0]) * n_win[1] + w[:, 1]) * n_win[2] + w[:, 2]
    volume = int(win.prod())
    key_y = win_id * volume + (in_win[:, 1] * win[0] + in_win[:, 0]) * win[2] + in_win[:, 2]
    key_x = win_id * volume + (in_win[:, 0] * win[1] + in_win[:, 1]) * win[2] + in_win[:, 2]
    sorted_keys, order = torch.stack([key_y, key_x]).sort(dim=1, stable=True)
    counts = torch.unique_consecutive(sorted_keys[0] // volume, return_counts=True)[1]
    n_sets = (counts + S - 1) // S
    set_window = torch.repeat_interleave(torch.arange(counts.numel(), device=device), n_sets)
    local = torch.arange(set_window.numel(), device=device) - (n_sets.cumsum(0) - n_sets)[set_window]
    flat = local[:, None] * S + torch.arange(S, device=device)  # [M, S] slot index in its window
    n, total = counts[set_window][:, None], n_sets[set_window][:, None] * S
    rank = flat * n // total
    # Flat slot 0 gives floor(-n / total) = -1, never equal to a rank: a window's first slot is a first occurrence.
    first = (flat - 1) * n // total != rank
    set_inds = order[:, ((counts.cumsum(0) - counts)[set_window][:, None] + rank)]
    key_mask = (~first & (torch.arange(S, device=device) > 0)).expand_as(set_inds).clone()
    slot_ids = torch.arange(flat.numel(), device=device).view_as(flat)
    first_slot = torch.empty(2, c.shape[0], dtype=torch.int64, device=device)
    for row in range(2):
        first_slot[row, set_inds[row][first]] = slot_ids[first]
    return set_inds, key_mask, first_slot, in_win.int()


def _check_partition_args(coords, sparse_shape, window, shift, set_size) -> tuple[Triple, Triple, Triple]:
    if not isinstance(coords, Tensor) or coords.dtype != torch.int32 or coords.dim() != 2 or coords.shape[1] != 4:
        got = f"{coords.dtype} {list(coords.shape)}" if isinstance(coords, Tensor) else type(coords).__name__
        raise ValueError(f"set_partition: coords must be int32 [N, 4] (batch, x, y, z), got {got}")
    shape = as_triple(sparse_shape, "set_partition: sparse_shape")
    win = as_triple(window, "set_partition: window")
    sh = as_triple(shift, "set_partition: shift")
    if min(shape) < 1 or min(win) < 1 or any(not 0 <= s < w for s, w in zip(sh, win)):
        raise ValueError(
            f"set_partition: need sparse_shape > 0, window > 0 and 0 <= shift < window per axis, "
            f"got sparse_shape {shape}, window {win}, shift {sh}"
        )
    if not isinstance(set_size, int) or set_size < 1:
        raise ValueError(f"set_partition: set_size must be a positive int, got {set_size!r}")
    if coords.shape[0]:
        lo, hi = coords.amin(0).tolist(), coords.amax(0).tolist()
        upper = [None, *shape]
        for axis in range(4):
            if lo[axis] < 0 or (axis > 0 and hi[axis] >= upper[axis]):
                raise ValueError(
                    f"set_partition: coords column {axis} must lie in "
                    f"{'[0, inf)' if axis == 0 else f'[0, {upper[axis]})'}, got range [{lo[axis]}, {hi[axis]}]"
                )
    return shape, win, sh


if HAS_NATIVE:

    @torch.library.register_fake("sparse3d::set_partition")
    def _(coords, sparse_shape, window, shift, set_size):
        n_sets = torch.library.get_ctx().new_dynamic_size()
        n = coords.shape[0]
        return (
            coords.new_empty(2, n_sets, set_size, dtype=torch.int64),
            coords.new_empty(2, n_sets, set_size, dtype=torch.bool),
            coords.new_empty(2, n, dtype=torch.int64),
            coords.new_empty(n, 3),
        )
