"""Output-stationary sparse convolution over a kernel map (the op behind every sparse conv
layer in :mod:`sparse3d.nn`).

``out[o] = sum_k feats[nbr[o, k]] @ weight[k]`` over the taps with ``nbr[o, k] >= 0``.
Every output row is summed by one task in a fixed order (taps, then input channels), and
the weight gradient is reduced over fixed chunks of rows in a fixed order, so results are
bitwise identical at any thread count; the input gradient is the same op over the
transposed map (:func:`sparse3d.core.kernel_map.invert_kernel_map`).
"""

import torch
from torch import Tensor

from sparse3d._native import HAS_NATIVE
from sparse3d.core.column_sum import column_sum
from sparse3d.core.kernel_map import invert_kernel_map


def sparse_conv(feats: Tensor, weight: Tensor, nbr: Tensor, inv: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
    """Sparse convolution of voxel features over a kernel map.

    Args:
        feats: float [N, Cin] input features.
        weight: float [K, Cin, Cout] per-tap weights, tap order as in ``nbr``.
        nbr: int32 [M, K] kernel map (input row per output row and tap, or -1).
        inv: int32 [N, K] transposed map (:func:`invert_kernel_map` of ``nbr``), for the
            input gradient; computed in the backward pass when None. For a submanifold map
            (odd kernel centred on the same sites) pass ``nbr`` itself: its transpose is
            ``nbr`` with the taps mirrored, so the backward reads ``nbr`` with the weight's
            taps reversed and no second map is kept.
        bias: float [Cout] or None; each output row's sum starts from it.

    Returns:
        float [M, Cout], differentiable with respect to ``feats``, ``weight`` and ``bias``.

    bfloat16 ``feats`` and ``weight`` (inference only) give a float32 output summed in
    float32 (``bias`` float32): VDPBF16PS tiles on CPUs with AVX512-BF16, else the float32
    kernels on the widened values (:func:`sparse3d.core.precision.bf16_dot_products`).
    """
    _check_conv_args(feats, weight, nbr)
    bias_dtype = torch.float32 if feats.dtype == torch.bfloat16 else weight.dtype
    if bias is not None and (bias.shape != (weight.shape[2],) or bias.dtype != bias_dtype):
        raise ValueError(f"sparse_conv: bias must be {bias_dtype} [{weight.shape[2]}], got {bias.dtype} {list(bias.shape)}")
    if feats.dtype == torch.bfloat16 and torch.is_grad_enabled() and (feats.requires_grad or weight.requires_grad):
        raise ValueError("sparse_conv: bfloat16 is for inference; train in float32 (or call it under torch.no_grad())")
    if HAS_NATIVE:
        return torch.ops.sparse3d.sparse_conv(feats, weight, nbr, inv, bias)
    return sparse_conv_ref(feats, weight, nbr, bias)


def sparse_conv_ref(feats: Tensor, weight: Tensor, nbr: Tensor, bias: Tensor | None = None) -> Tensor:
    """Pure-torch reference of :func:`sparse_conv` (gather all taps, one einsum; bfloat16
    inputs are widened to float32)."""
    if feats.dtype == torch.bfloat16:
        feats, weight = feats.float(), weight.float()
    padded = torch.cat([feats, feats.new_zeros(1, feats.shape[1])])  # row N reads as zeros
    rows = torch.where(nbr >= 0, nbr.long(), feats.shape[0])
    out = torch.einsum("mkc,kcd->md", padded[rows], weight)
    return out if bias is None else out + bias


def _check_conv_args(feats: Tensor, weight: Tensor, nbr: Tensor) -> None:
    if feats.dim() != 2 or not feats.is_floating_point():
        raise ValueError(f"sparse_conv: feats must be a float [N, Cin] tensor, got {feats.dtype} {list(feats.shape)}")
    if nbr.dim() != 2 or nbr.dtype != torch.int32:
        raise ValueError(f"sparse_conv: nbr must be an int32 [M, K] kernel map, got {nbr.dtype} {list(nbr.shape)}")
    if weight.dim() != 3 or weight.shape[0] != nbr.shape[1] or weight.shape[1] != feats.shape[1]:
        raise ValueError(
            f"sparse_conv: weight must be [K, Cin, Cout] = [{nbr.shape[1]}, {feats.shape[1]}, Cout], "
            f"got {list(weight.shape)}"
        )
    if weight.dtype != feats.dtype:
        raise TypeError(f"sparse_conv: weight dtype {weight.dtype} differs from feats dtype {feats.dtype}")


if HAS_NATIVE:

    @torch.library.register_fake("sparse3d::sparse_conv")
    def _(feats, weight, nbr, inv=None, bias=None):
        dtype = torch.float32 if feats.dtype == torch.bfloat16 else feats.dtype
        return feats.new_empty(nbr.shape[0], weight.shape[2], dtype=dtype)

    @torch.library.register_fake("sparse3d::sparse_conv_bwd_weight")
    def _(feats, v_out, nbr):
        return feats.new_empty(nbr.shape[1], feats.shape[1], v_out.shape[1])

    def _setup_context(ctx, inputs, output):
        feats, weight, nbr, inv = inputs[:4]
        ctx.n_inputs = len(inputs)  # bias is optional at the call site
        ctx.bias_grad = len(inputs) > 4 and inputs[4] is not None and inputs[4].requires_grad
        ctx.n_in = feats.shape[0]
        ctx.mirrored = inv is nbr
        saved_feats = feats if ctx.needs_input_grad[1] else None
        saved_weight = weight if ctx.needs_input_grad[0] else None
        ctx.save_for_backward(saved_feats, saved_weight, nbr, None if ctx.mirrored else inv)

    def _backward(ctx, v_out):
        feats, weight, nbr, inv = ctx.saved_tensors
        v_out = v_out.contiguous()
        v_feats = v_weight = None
        if ctx.needs_input_grad[0]:
            if ctx.mirrored:  # tap k from o to i is tap K-1-k from i to o
                v_feats = torch.ops.sparse3d.sparse_conv(v_out, weight.flip(0).transpose(1, 2).contiguous(), nbr)
            else:
                inv = inv if inv is not None else invert_kernel_map(nbr, ctx.n_in)
                v_feats = torch.ops.sparse3d.sparse_conv(v_out, weight.transpose(1, 2).contiguous(), inv)
        if ctx.needs_input_grad[1]:
            v_weight = torch.ops.sparse3d.sparse_conv_bwd_weight(feats, v_out, nbr)
        grads = (v_feats, v_weight, None, None)  # the kernel maps are not differentiable
        if ctx.n_inputs == 4:
            return grads
        return (*grads, column_sum(v_out) if ctx.bias_grad else None)

    torch.library.register_autograd("sparse3d::sparse_conv", _backward, setup_context=_setup_context)
