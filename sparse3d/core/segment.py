"""Segment reductions: reduce consecutive row ranges of a [N, C] tensor.

Segments are CSR-style: segment s owns rows ``offsets[s]:offsets[s + 1]``. This is the
deterministic building block behind voxel feature pooling (mean / max of the points in a
voxel) and per-window statistics: every output has exactly one writer.
"""

from typing import Literal

import torch
from torch import Tensor

from sparse3d._native import HAS_NATIVE

Reduction = Literal["sum", "mean", "max"]
_REDUCTIONS = ("sum", "mean", "max")


def segment_reduce(values: Tensor, offsets: Tensor, reduce: Reduction = "sum") -> Tensor:
    """Reduces each segment of rows of ``values``.

    Args:
        values: float [N, C].
        offsets: int64 [S + 1], non-decreasing, ``offsets[0] == 0``, ``offsets[-1] == N``.
        reduce: "sum", "mean" or "max". Empty segments give 0 for every reduction;
            "max" takes its gradient from the first row among ties.

    Returns:
        float [S, C], differentiable with respect to ``values``.
    """
    _check_segment_args(values, offsets, reduce)
    if HAS_NATIVE:
        return torch.ops.sparse3d.segment_reduce(values, offsets, reduce)[0]
    return segment_reduce_ref(values, offsets, reduce)


def segment_reduce_ref(values: Tensor, offsets: Tensor, reduce: Reduction = "sum") -> Tensor:
    """Pure-torch reference of :func:`segment_reduce` (same arguments and result)."""
    n_segments = offsets.shape[0] - 1
    counts = offsets.diff()
    segment_ids = torch.repeat_interleave(torch.arange(n_segments, device=values.device), counts)
    index = segment_ids[:, None].expand_as(values)
    out = values.new_zeros(n_segments, values.shape[1])
    if reduce == "max":
        return out.scatter_reduce(0, index, values, "amax", include_self=False)
    out = out.index_add(0, segment_ids, values)
    if reduce == "mean":
        out = out / counts.clamp(min=1).to(values.dtype)[:, None]
    return out


def _check_segment_args(values: Tensor, offsets: Tensor, reduce: str) -> None:
    if reduce not in _REDUCTIONS:
        raise ValueError(f"segment_reduce: reduce must be one of {_REDUCTIONS}, got {reduce!r}")
    if values.dim() != 2 or not values.is_floating_point():
        raise ValueError(
            f"segment_reduce: values must be a float [N, C] tensor, got {values.dtype} {list(values.shape)}"
        )
    if offsets.dim() != 1 or offsets.dtype != torch.int64 or offsets.numel() < 1:
        raise ValueError(
            f"segment_reduce: offsets must be int64 [S + 1], got {offsets.dtype} {list(offsets.shape)}"
        )


if HAS_NATIVE:

    @torch.library.register_fake("sparse3d::segment_reduce")
    def _(values, offsets, reduce):
        n_segments = offsets.shape[0] - 1
        arg_rows = n_segments if reduce == "max" else 0
        return (
            values.new_empty(n_segments, values.shape[1]),
            offsets.new_empty(arg_rows, values.shape[1]),
        )

    @torch.library.register_fake("sparse3d::segment_reduce_bwd")
    def _(v_out, offsets, arg, reduce, n):
        return v_out.new_empty(n, v_out.shape[1])

    def _setup_context(ctx, inputs, output):
        values, offsets, reduce = inputs
        ctx.reduce, ctx.n = reduce, values.shape[0]
        ctx.save_for_backward(offsets, output[1])

    def _backward(ctx, v_out, _v_arg):
        offsets, arg = ctx.saved_tensors
        v_values = torch.ops.sparse3d.segment_reduce_bwd(v_out, offsets, arg, ctx.reduce, ctx.n)
        return v_values, None, None  # offsets and reduce are not differentiable

    torch.library.register_autograd(
        "sparse3d::segment_reduce", _backward, setup_context=_setup_context
    )
