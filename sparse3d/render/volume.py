"""Volume rendering over variable-length ray segments (NeRF's quadrature).

Sample i of a ray, with density sigma_i over a stretch delta_i, has opacity
``alpha_i = 1 - exp(-sigma_i delta_i)`` and weight ``w_i = T_i alpha_i``, where
``T_i = exp(-sum_{j<i} sigma_j delta_j)`` is the light that reaches it. A ray's colour is
``sum_i w_i c_i + T_end * background``. Once T falls below ``min_transmittance`` the rest
of the ray is invisible: its weights are 0 and carry no gradient (early termination).
Samples are a CSR list (sparse3d.core.ray_march.RaySamples); the native kernel runs one
ray per task, forward and backward, so results do not depend on the thread count.
"""

import torch
from torch import Tensor

from sparse3d._native import HAS_NATIVE
from sparse3d.core.segment import segment_reduce


def volume_weights(sigmas: Tensor, deltas: Tensor, offsets: Tensor, min_transmittance: float = 0.0) -> tuple[Tensor, Tensor]:
    """Rendering weights of the samples and each ray's final transmittance.

    Args:
        sigmas: float32 or float64 [S] densities, >= 0; differentiable.
        deltas: [S] of sigmas' dtype, the stretch each sample stands for (world units);
            not differentiable (no gradient reaches it).
        offsets: int64 [R + 1] ray r owns samples ``offsets[r]:offsets[r + 1]``, in order.
        min_transmittance: samples reached by less light than this get weight 0 (and
            so does the rest of their ray); 0 keeps every sample.

    Returns:
        weights: float [S] ``T_i alpha_i``;
        transmittance: float [R] ``T_end``, the light left after the ray's last sample
            (1 for an empty ray), the background's weight. Both differentiable with
            respect to ``sigmas``.
    """
    _check_volume_args(sigmas, deltas, offsets)
    if HAS_NATIVE:
        return torch.ops.sparse3d.volume_weights(sigmas, deltas, offsets, min_transmittance)
    return volume_weights_ref(sigmas, deltas, offsets, min_transmittance)


def volume_weights_ref(sigmas: Tensor, deltas: Tensor, offsets: Tensor, min_transmittance: float = 0.0) -> tuple[Tensor, Tensor]:
    """Pure-torch reference of :func:`volume_weights`: the samples padded into an
    [R, longest ray] array (exclusive cumulative sums along each row)."""
    counts = offsets.diff()
    rays = len(counts)
    width = int(counts.max()) if rays else 0
    slot = torch.arange(width, device=sigmas.device)
    valid = slot[None, :] < counts[:, None]
    flat = (offsets[:-1, None] + slot[None, :])[valid]
    tau = sigmas.new_zeros(rays, width).index_put((valid.nonzero()[:, 0], valid.nonzero()[:, 1]), sigmas[flat] * deltas[flat])
    depth = torch.cat([tau.new_zeros(rays, 1), tau.cumsum(1)], 1)  # optical depth before each sample, and after the last
    trans = torch.exp(-depth)
    visible = trans[:, :-1] >= min_transmittance
    weights = torch.where(visible & valid, trans[:, :-1] * (1 - torch.exp(-tau)), 0.0)
    # The background sees the light left where the ray ends or stops (T is non-increasing).
    hidden_at = torch.where(valid & ~visible, slot[None, :], counts[:, None])
    first_hidden = torch.cat([hidden_at, counts[:, None]], 1).amin(1)
    end = trans.gather(1, first_hidden[:, None])[:, 0]
    return weights[valid], end


def composite(weights: Tensor, transmittance: Tensor, values: Tensor, offsets: Tensor, background: Tensor | None = None) -> Tensor:
    """Per-ray sums of weighted sample values, plus the background behind each ray.

    Args:
        weights: float [S] rendering weights (:func:`volume_weights`).
        transmittance: float [R] each ray's final transmittance.
        values: float [S, C] sample values (colours, depths, ...).
        offsets: int64 [R + 1] the rays' samples.
        background: float [C] or [R, C] behind the rays; None: nothing (0).

    Returns:
        float [R, C] ``sum_i w_i v_i + T_end * background``.
    """
    out = segment_reduce(weights[:, None] * values, offsets, "sum")
    if background is None:
        return out
    return out + transmittance[:, None] * background


def _check_volume_args(sigmas: Tensor, deltas: Tensor, offsets: Tensor) -> None:
    if sigmas.dim() != 1 or deltas.shape != sigmas.shape:
        raise ValueError(f"volume_weights: sigmas and deltas must both be [S], got {list(sigmas.shape)} and {list(deltas.shape)}")
    if sigmas.dtype not in (torch.float32, torch.float64) or deltas.dtype != sigmas.dtype:
        raise ValueError(f"volume_weights: sigmas and deltas must be float32 or float64 of one dtype, got {sigmas.dtype} and {deltas.dtype}")
    if offsets.dim() != 1 or offsets.dtype != torch.int64 or offsets.numel() < 1:
        raise ValueError(f"volume_weights: offsets must be int64 [R + 1], got {offsets.dtype} {list(offsets.shape)}")


if HAS_NATIVE:

    @torch.library.register_fake("sparse3d::volume_weights")
    def _(sigmas, deltas, offsets, min_transmittance):
        return sigmas.new_empty(sigmas.shape), sigmas.new_empty(offsets.shape[0] - 1)

    @torch.library.register_fake("sparse3d::volume_weights_bwd")
    def _(v_weights, v_transmittance, sigmas, deltas, offsets, weights, transmittance, min_transmittance):
        return sigmas.new_empty(sigmas.shape)

    def _setup_context(ctx, inputs, output):
        sigmas, deltas, offsets, min_transmittance = inputs
        ctx.min_transmittance = min_transmittance
        # The backward replays the forward's march to find where each ray stops, and takes
        # the weights and T_end for the suffix sums of its gradient.
        ctx.save_for_backward(sigmas, deltas, offsets, *output)

    def _backward(ctx, v_weights, v_transmittance):
        sigmas, deltas, offsets, weights, transmittance = ctx.saved_tensors
        v_sigmas = torch.ops.sparse3d.volume_weights_bwd(
            v_weights, v_transmittance, sigmas, deltas, offsets, weights, transmittance, ctx.min_transmittance
        )
        return v_sigmas, None, None, None  # deltas, offsets and min_transmittance get no gradient

    torch.library.register_autograd("sparse3d::volume_weights", _backward, setup_context=_setup_context)
