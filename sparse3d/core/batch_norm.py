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


def affine_act(values: Tensor, scale: Tensor, shift: Tensor, residual: Tensor | None = None, relu: bool = True) -> Tensor:
    """``act(values * scale + shift + residual)`` in one pass: batch norm's per-channel
    affine step fused with the residual add and ReLU that follow it in a sparse block.

    Args:
        values: float [N, C].
        scale, shift: float [C], same dtype.
        residual: float [N, C] or None.
        relu: ReLU (True) or identity (False).

    Returns:
        float [N, C]; differentiable in every tensor argument (the ReLU's gradient is 0
        where the output is 0, as torch's).
    """
    _check_rows(values, "values")
    if HAS_NATIVE:
        return torch.ops.sparse3d.affine_act(values, scale, shift, residual, relu)
    return affine_act_ref(values, scale, shift, residual, relu)


def affine_act_ref(values: Tensor, scale: Tensor, shift: Tensor, residual: Tensor | None = None, relu: bool = True) -> Tensor:
    """Pure-torch reference of :func:`affine_act`."""
    out = values * scale + shift
    if residual is not None:
        out = out + residual
    return out.relu() if relu else out


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

    @torch.library.register_fake("sparse3d::affine_act")
    def _(values, scale, shift, residual, relu):
        return torch.empty_like(values)

    def _affine_act_setup(ctx, inputs, output):
        values, scale, _shift, residual, relu = inputs
        ctx.has_residual, ctx.relu = residual is not None, relu
        ctx.save_for_backward(values, scale, output if relu else None)

    def _affine_act_backward(ctx, v_out):
        values, scale, output = ctx.saved_tensors
        if ctx.relu:
            v_out = torch.ops.aten.threshold_backward(v_out, output, 0)  # ReLU's own backward: one pass
        v_values = v_out * scale if ctx.needs_input_grad[0] else None
        v_scale = column_sum(v_out * values) if ctx.needs_input_grad[1] else None
        v_shift = column_sum(v_out) if ctx.needs_input_grad[2] else None
        v_residual = v_out if ctx.has_residual else None
        return v_values, v_scale, v_shift, v_residual, None  # relu is a flag

    torch.library.register_autograd("sparse3d::affine_act", _affine_act_backward, setup_context=_affine_act_setup)
