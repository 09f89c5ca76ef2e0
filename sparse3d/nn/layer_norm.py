"""LayerNorm whose parameter gradients are bitwise reproducible at any thread count.

torch's CPU layer-norm backward sums the weight / bias gradients over rows in per-thread
chunks, so their rounding changes with ``torch.set_num_threads``. Here normalisation runs
without affine parameters (rows are independent, so it is deterministic as it is), and the
affine step reduces its gradients with :func:`sparse3d.core.column_sum.column_sum`.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparse3d.core.column_sum import column_sum


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last dim (same parameters and state-dict names) with
    thread-count independent gradients. Input float [..., C].

    Args:
        channels: C, the normalised (last) dim.
        eps: added to the variance.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        xhat = F.layer_norm(x, self.normalized_shape, None, None, self.eps)
        if self.weight is None:
            return xhat
        flat = xhat.reshape(-1, xhat.shape[-1])
        return _Affine.apply(flat, self.weight, self.bias).view_as(xhat)


class _Affine(torch.autograd.Function):
    """x * weight + bias over rows of x [N, C], with column-sum parameter gradients."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        out = x * weight
        return out + bias if bias is not None else out

    @staticmethod
    def backward(ctx, v_out):
        x, weight = ctx.saved_tensors
        v_x = v_out * weight if ctx.needs_input_grad[0] else None
        v_weight = column_sum(v_out * x) if ctx.needs_input_grad[1] else None
        v_bias = column_sum(v_out) if ctx.needs_input_grad[2] else None
        return v_x, v_weight, v_bias
