"""Row gathers with a deterministic, row-wise backward.

Set attention reads voxel rows into set slots (a voxel can fill several slots) and reads
each voxel's output back from its first slot. Autograd's backward of ``index_select`` /
advanced indexing scatter-adds element by element; here the backward is a segment sum over
the slots of each row (:func:`sparse3d.core.segment.segment_reduce`), with the slots
grouped by row once per partition: one writer per output row, whatever the thread count.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from sparse3d.core.segment import segment_reduce


@dataclass
class GatherPlan:
    """Which rows a gather reads, and those reads grouped by source row (for the backward)."""

    index: Tensor
    """int64 [K] source row of each output row."""
    order: Tensor
    """int64 [K] output rows sorted by source row (stable)."""
    offsets: Tensor
    """int64 [n + 1]: output rows ``order[offsets[i]:offsets[i + 1]]`` read source row i."""

    @classmethod
    def build(cls, index: Tensor, n: int) -> "GatherPlan":
        """Plan of reading rows ``index`` (int64 [K], values in [0, n)) from an [n, C] tensor."""
        order = torch.sort(index, stable=True).indices
        counts = torch.bincount(index, minlength=n)
        return cls(index, order, torch.cat([counts.new_zeros(1), counts.cumsum(0)]))


def gather_rows(x: Tensor, plan: GatherPlan) -> Tensor:
    """``x[plan.index]``: float [n, C] -> [K, C], differentiable in ``x``."""
    return _GatherRows.apply(x, plan.index, plan.order, plan.offsets)


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, index, order, offsets):
        ctx.save_for_backward(order, offsets)
        return x.index_select(0, index)

    @staticmethod
    def backward(ctx, v_out):
        order, offsets = ctx.saved_tensors
        v_x = segment_reduce(v_out.index_select(0, order), offsets, "sum")
        return v_x, None, None, None  # the plan is not differentiable
