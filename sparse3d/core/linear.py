"""A linear map whose outputs and gradients are bitwise identical at any thread count.

BLAS (MKL, oneDNN) splits one GEMM among its threads by the thread count and the CPU's
features, and the order of the sums follows: the weight gradient ``v_out.T @ x`` (a
reduction over all rows) changes bits on AVX-512 / AMX machines, and MKL's forward changes
bits at the edges of each thread's block of rows. The native op computes every output
element as one fixed chain of fused multiply-adds (register-tiled AVX-512 / AVX2 kernels
with a scalar twin, cuda/cpu/linear.cpp), and the weight gradient as partial products over
fixed chunks of rows added in chunk order; the bias gradient is a
:func:`~sparse3d.core.column_sum.column_sum`.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from sparse3d._native import HAS_NATIVE
from sparse3d.core.column_sum import column_sum


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear`` with results independent of the thread count (float32 on the CPU).

    Args:
        x: float [..., I].
        weight: float [O, I].
        bias: float [O] or None.

    Returns:
        float [..., O], differentiable with respect to all three. Other dtypes and devices
        (cuBLAS does not depend on a CPU thread count), and every tensor when the extension
        is not built, take ``F.linear``.
    """
    if not (HAS_NATIVE and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32):
        return F.linear(x, weight, bias)
    rows = x.reshape(-1, x.shape[-1])
    return torch.ops.sparse3d.linear_rows(rows, weight, bias).view(*x.shape[:-1], weight.shape[0])


def conv2d_nhwc(
    padded: Tensor, weight: Tensor, bias: Tensor | None, kernel: tuple[int, int], stride: tuple[int, int],
    dilation: tuple[int, int],
) -> Tensor | None:
    """A 2-D convolution with the bits of :func:`linear` on its im2col columns, values and
    gradients, without making the columns: per output row, each tap's strided input rows go
    through the same kernel, accumulating in tap order; the backward reads the input and the
    output gradient where they lie.

    Args:
        padded: float [B, Hp, Wp, C], the zero-padded input, channels last.
        weight: float [O, kh kw C], taps (row-major over (kh, kw)) then channels.
        bias: float [O] or None.
        kernel, stride, dilation: (h, w) sizes.

    Returns:
        float [B, H', W', O], channels last, differentiable with respect to ``padded``,
        ``weight`` and ``bias``; None where the native op does not apply (no extension, or
        not CPU float32).
    """
    if not (HAS_NATIVE and padded.device.type == "cpu" and padded.dtype == weight.dtype == torch.float32):
        return None
    return torch.ops.sparse3d.conv2d_nhwc(padded, weight, bias, kernel, stride, dilation)


if HAS_NATIVE:

    @torch.library.register_fake("sparse3d::linear_rows")
    def _(x, weight, bias=None):
        return x.new_empty(x.shape[0], weight.shape[0])

    @torch.library.register_fake("sparse3d::linear_bwd_weight")
    def _(v_out, x):
        return x.new_empty(v_out.shape[1], x.shape[1])

    def _setup_context(ctx, inputs, output):
        x, weight = inputs[:2]
        ctx.has_bias = len(inputs) > 2 and inputs[2] is not None
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, weight if ctx.needs_input_grad[0] else None)

    def _backward(ctx, v_out):
        x, weight = ctx.saved_tensors
        v_x = torch.ops.sparse3d.linear_rows(v_out, weight.t()) if ctx.needs_input_grad[0] else None
        v_weight = torch.ops.sparse3d.linear_bwd_weight(v_out, x) if ctx.needs_input_grad[1] else None
        v_bias = column_sum(v_out) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return v_x, v_weight, v_bias

    torch.library.register_autograd("sparse3d::linear_rows", _backward, setup_context=_setup_context)

    @torch.library.register_fake("sparse3d::conv2d_nhwc")
    def _(padded, weight, bias, kernel, stride, dilation):
        (b, hp, wp, _), (kh, kw), (sh, sw), (dh, dw) = padded.shape, kernel, stride, dilation
        return padded.new_empty(b, (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1,
                                weight.shape[0])

    @torch.library.register_fake("sparse3d::conv2d_nhwc_bwd_input")
    def _(v_out, weight, padded_shape, kernel, stride, dilation):
        return v_out.new_empty(padded_shape)

    @torch.library.register_fake("sparse3d::conv2d_nhwc_bwd_weight")
    def _(v_out, padded, kernel, stride, dilation):
        return padded.new_empty(v_out.shape[3], kernel[0] * kernel[1] * padded.shape[3])

    def _conv_setup_context(ctx, inputs, output):
        padded, weight, bias, *ctx.geometry = inputs
        ctx.padded_shape, ctx.has_bias = list(padded.shape), bias is not None
        ctx.save_for_backward(padded if ctx.needs_input_grad[1] else None, weight if ctx.needs_input_grad[0] else None)

    def _conv_backward(ctx, v_out):
        padded, weight = ctx.saved_tensors
        v_out = v_out.contiguous()
        v_padded = (torch.ops.sparse3d.conv2d_nhwc_bwd_input(v_out, weight, ctx.padded_shape, *ctx.geometry)
                    if ctx.needs_input_grad[0] else None)
        v_weight = (torch.ops.sparse3d.conv2d_nhwc_bwd_weight(v_out, padded, *ctx.geometry)
                    if ctx.needs_input_grad[1] else None)
        v_bias = column_sum(v_out.view(-1, v_out.shape[3])) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return v_padded, v_weight, v_bias, None, None, None

    torch.library.register_autograd("sparse3d::conv2d_nhwc", _conv_backward, setup_context=_conv_setup_context)
