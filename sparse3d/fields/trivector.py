"""Tri-vector (CP) evaluation of local tensors: Strivec's hot loop.

Local tensor n is a cube of half-size h centred on ``centers[n]``, holding R components;
component r is the outer product of three vectors ``vectors[n, a, r, :]`` (a = x, y, z)
of D values each, sampled uniformly across the cube (value 0 on its low face, D - 1 on
its high face). Its value at a point is the product over the axes of the vectors linearly
interpolated at the point's coordinate. For a sample point and its K selected tensors
with weights (:func:`sparse3d.core.box_lookup.box_lookup`) the op returns, per component,
the weighted sum over the tensors: the aggregated feature ``[S, R]``. The native kernel
fuses the gather, the interpolation, the product and the sum (no per-sample
intermediates), and its backward accumulates each tensor's gradient from its samples in
a fixed order, so results do not depend on the thread count.
"""

import torch
from torch import Tensor

from sparse3d._native import HAS_NATIVE


def trivector_features(
    points: Tensor, index: Tensor, weights: Tensor, vectors: Tensor, centers: Tensor, half_size: float
) -> Tensor:
    """Aggregated CP features of local tensors at sample points.

    Args:
        points: float [S, 3] world-frame sample points (all floats share the vectors' dtype).
        index: int64 [S, K] tensors of each sample, -1 for none (skipped).
        weights: float [S, K] the weight of each tensor in the sample's sum.
        vectors: float [N, 3, R, D] the tensors' vectors, D >= 2; differentiable.
        centers: float [N, 3] the tensors' centres, world frame.
        half_size: h, half the cube's edge; coordinates outside the cube clamp to its faces.

    Returns:
        float [S, R]: ``sum_k w_k prod_a lerp(vectors[index_k, a, r], u_a)`` with
        ``u_a = (p_a - c_a + h) / (2 h) * (D - 1)``; differentiable with respect to ``vectors``.
    """
    _check_trivector_args(points, index, weights, vectors, centers, half_size)
    if HAS_NATIVE:
        return torch.ops.sparse3d.trivector_features(points, index, weights, vectors, centers, half_size)
    return trivector_features_ref(points, index, weights, vectors, centers, half_size)


def trivector_features_ref(
    points: Tensor, index: Tensor, weights: Tensor, vectors: Tensor, centers: Tensor, half_size: float
) -> Tensor:
    """Pure-torch reference of :func:`trivector_features` (memory 2 x S x K x 3 x R)."""
    d = vectors.shape[3]
    found = index >= 0
    safe = index.clamp(min=0)
    u = ((points[:, None, :] - centers[safe] + half_size) / (2 * half_size) * (d - 1)).clamp(0, d - 1)  # [S, K, 3]
    i0 = u.floor().long().clamp(max=d - 2)
    frac = (u - i0.to(u.dtype))[..., None]  # [S, K, 3, 1]
    axes = torch.arange(3, device=points.device)
    lo = vectors[safe[..., None], axes, :, i0]  # [S, K, 3, R]
    hi = vectors[safe[..., None], axes, :, i0 + 1]
    value = (lo * (1 - frac) + hi * frac).prod(2)  # [S, K, R]
    w = torch.where(found, weights, 0.0)[..., None]
    return (w * value).sum(1)


def _check_trivector_args(points, index, weights, vectors, centers, half_size) -> None:
    s = points.shape[0]
    if vectors.dim() != 4 or vectors.shape[1] != 3 or vectors.shape[3] < 2:
        raise ValueError(f"trivector_features: vectors must be [N, 3, R, D >= 2], got {list(vectors.shape)}")
    n = vectors.shape[0]
    for name, x, shape in (("points", points, (s, 3)), ("index", index, (s, index.shape[-1])),
                           ("weights", weights, (s, index.shape[-1])), ("centers", centers, (n, 3))):
        if tuple(x.shape) != shape:
            raise ValueError(f"trivector_features: {name} must be {list(shape)}, got {list(x.shape)}")
    if index.dtype != torch.int64:
        raise ValueError(f"trivector_features: index must be int64, got {index.dtype}")
    if not vectors.dtype.is_floating_point or any(x.dtype != vectors.dtype for x in (points, weights, centers)):
        raise ValueError(
            "trivector_features: points, weights, vectors and centers must share one float dtype, got "
            f"{points.dtype}, {weights.dtype}, {vectors.dtype}, {centers.dtype}"
        )
    if not half_size > 0:
        raise ValueError(f"trivector_features: half_size must be > 0, got {half_size}")


if HAS_NATIVE:

    @torch.library.register_fake("sparse3d::trivector_features")
    def _(points, index, weights, vectors, centers, half_size):
        return vectors.new_empty(points.shape[0], vectors.shape[2])

    @torch.library.register_fake("sparse3d::trivector_features_bwd")
    def _(v_out, points, index, weights, vectors, centers, half_size):
        return torch.empty_like(vectors)

    def _setup_context(ctx, inputs, output):
        points, index, weights, vectors, centers, half_size = inputs
        ctx.half_size = half_size
        ctx.save_for_backward(points, index, weights, vectors, centers)

    def _backward(ctx, v_out):
        if not ctx.needs_input_grad[3]:
            return None, None, None, None, None, None
        points, index, weights, vectors, centers = ctx.saved_tensors
        v_vectors = torch.ops.sparse3d.trivector_features_bwd(
            v_out, points, index, weights, vectors, centers, ctx.half_size
        )
        return None, None, None, v_vectors, None, None  # only the vectors are differentiable

    torch.library.register_autograd(
        "sparse3d::trivector_features", _backward, setup_context=_setup_context
    )
