"""Batch-norm statistics of voxel features whose bits do not depend on the thread count.

Rows are cut into fixed chunks; each chunk's statistics come from one task, and chunks are
combined in order (mean / M2 with Chan et al.'s pairwise update, in float64), so the
summation tree is fixed. ``torch.var_mean`` over a tall ``[N, C]`` tensor instead splits
rows among threads, which changes its rounding with ``torch.set_num_threads``.
"""

import torch
from torch import Tensor

from sparse3d._native import HAS_NATIVE
from sparse3d.core.column_sum import column_sum


def batch_norm_stats(values: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and biased variance.

    Args:
        values: float [N, C].

    Returns:
        mean, var: float [C] each (0 when N = 0). Not differentiable (the batch-norm
        autograd formula uses them as constants).
    """
    _check_rows(values, "values")
    if HAS_NATIVE:
        return torch.ops.sparse3d.batch_norm_stats(values)
    return batch_norm_stats_ref(values)


def batch_norm_stats_ref(values: Tensor) -> tuple[Tensor, Tensor]:
    """Pure-torch reference of :func:`batch_norm_stats` (float64 two-pass column sums)."""
    n = max(values.shape[0], 1)
    x = values.double()
    mean = column_sum(x) / n
    var = column_sum((x - mean) ** 2) / n
    return mean.to(values.dtype), var.to(values.dtype)


def batch_norm_bwd_reduce(v_out: Tensor, values: Tensor, mean: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel sums of ``v_out`` and of ``v_out * (values - mean)``.

    Args:
        v_out: float [N, C] gradient of the normalised output.
        values: float [N, C] batch-norm input.
        mean: float [C] its batch mean.

    Returns:
        sum_v, sum_v_centred: float [C] each.
    """
    _check_rows(v_out, "v_out")
    _check_rows(values, "values")
    if HAS_NATIVE:
        return torch.ops.sparse3d.batch_norm_bwd_reduce(v_out, values, mean)
    return batch_norm_bwd_reduce_ref(v_out, values, mean)


def batch_norm_bwd_reduce_ref(v_out: Tensor, values: Tensor, mean: Tensor) -> tuple[Tensor, Tensor]:
    """Pure-torch reference of :func:`batch_norm_bwd_reduce` (float64 column sums)."""
    v = v_out.double()
    centred = values.double() - mean.double()
    return column_sum(v).to(v_out.dtype), column_sum(v * centred).to(v_out.dtype)


def _check_rows(x: Tensor, name: str) -> None:
    if x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"batch norm: {name} must be a float [N, C] tensor, got {x.dtype} {list(x.shape)}")


if HAS_NATIVE:

    @torch.library.register_fake("sparse3d::batch_norm_stats")
    def _(values):
        return values.new_empty(values.shape[1]), values.new_empty(values.shape[1])

    @torch.library.register_fake("sparse3d::batch_norm_bwd_reduce")
    def _(v_out, values, mean):
        return values.new_empty(values.shape[1]), values.new_empty(values.shape[1])
