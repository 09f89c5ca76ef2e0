"""Column sums whose bits do not depend on the thread count.

``torch.sum(x, 0)`` over a tall ``[N, C]`` tensor may split the rows among threads, so its
rounding (and BatchNorm statistics, and the gradients of broadcast biases) can change with
``torch.set_num_threads``. Here rows are cut into fixed chunks, each chunk is summed by one
task (segment_reduce), and the chunk sums are added in order: a fixed summation tree.
"""

import torch
from torch import Tensor

from sparse3d.core.segment import segment_reduce

ROWS_PER_CHUNK = 4096
"""Rows per partial sum; fixed, so the summation tree is too."""


def column_sum(values: Tensor) -> Tensor:
    """Sum over rows, deterministic at any thread count.

    Args:
        values: float [N, C].

    Returns:
        float [C]; differentiable with respect to ``values``.
    """
    n = values.shape[0]
    bounds = torch.arange(0, n, ROWS_PER_CHUNK, device=values.device)
    offsets = torch.cat([bounds, torch.tensor([n], device=values.device)])
    partial = segment_reduce(values, offsets, "sum")  # [chunks, C]
    whole = torch.tensor([0, partial.shape[0]], device=values.device)
    return segment_reduce(partial, whole, "sum")[0]


def add_to_rows(x: Tensor, row: Tensor) -> Tensor:
    """``x + row`` broadcast over the leading dim, with a thread-count independent
    gradient for ``row`` (autograd would reduce the broadcast with ``sum``).

    Args:
        x: float [N, *S].
        row: float [*S], e.g. a learned per-slot embedding.

    Returns:
        float [N, *S], differentiable with respect to both.
    """
    if x.shape[1:] != row.shape:
        raise ValueError(f"add_to_rows: row must have shape {list(x.shape[1:])}, got {list(row.shape)}")
    return _AddToRows.apply(x, row)


class _AddToRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, row):
        return x + row

    @staticmethod
    def backward(ctx, v_out):
        v_row = column_sum(v_out.reshape(v_out.shape[0], -1)).view(v_out.shape[1:]) if ctx.needs_input_grad[1] else None
        return v_out, v_row
