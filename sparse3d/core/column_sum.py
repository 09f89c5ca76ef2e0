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
