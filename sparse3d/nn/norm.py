"""Batch normalisation that is bitwise reproducible at any thread count (torch's batch
norms are not: their training statistics are reduced across threads): of sparse voxel
features, fused with the residual add and ReLU that follow it in sparse residual blocks,
and of dense [B, C, H, W] maps (the BEV backbones and heads), through the same kernels."""

import torch
from torch import Tensor, nn

from sparse3d.core.batch_norm import affine_act, batch_norm_bwd_reduce, batch_norm_stats


class _RowBatchNorm:
    """The deterministic batch norm of rows float [N, C], mixed into torch's batch-norm
    modules (their parameters, buffers and state-dict names are kept)."""

    def normalize(self, feats: Tensor, residual: Tensor | None = None, relu: bool = False) -> Tensor:
        """``act(bn(feats) + residual)``, act = ReLU or identity.

        Args:
            feats: float [N, C].
            residual: float [N, C] added after the normalisation, or None.
            relu: apply ReLU to the sum.

        Returns:
            float [N, C]. In training mode (or without running statistics) the batch
            statistics are used and, when tracked, folded into the running ones.
        """
        name = type(self).__name__
        if feats.dim() != 2 or feats.shape[1] != self.num_features:
            raise ValueError(f"{name}: feats must be [N, {self.num_features}], got {list(feats.shape)}")
        if residual is not None and residual.shape != feats.shape:
            raise ValueError(f"{name}: residual must be {list(feats.shape)}, got {list(residual.shape)}")
        if not self.training and self.track_running_stats:
            invstd = torch.rsqrt(self.running_var + self.eps)
            return affine_act(feats, *_scale_shift(self.running_mean, invstd, self.weight, self.bias), residual, relu)
        n = feats.shape[0]
        if n < 2:
            raise ValueError(f"{name}: training needs at least 2 rows, got {n}")
        out, mean, var = _BatchNormActTrain.apply(feats, self.weight, self.bias, residual, self.eps, relu)
        if self.training and self.track_running_stats:
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                self.running_mean.lerp_(mean, momentum)
                self.running_var.lerp_(var * (n / (n - 1)), momentum)  # unbiased, as torch
        return out


class SparseBatchNorm1d(_RowBatchNorm, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` over voxel features float [N, C] with deterministic statistics and
    gradients; same parameters, buffers and state-dict names (weight, bias, running_mean,
    running_var, num_batches_tracked), so it loads spconv / OpenPCDet checkpoints.

    :meth:`normalize` also adds a residual and applies ReLU in the same pass over the
    features; ``SparseSequential`` uses it for a batch norm followed by ``nn.ReLU``.
    """

    def forward(self, feats: Tensor) -> Tensor:
        return self.normalize(feats)


class BatchNorm2d(_RowBatchNorm, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters, buffers and state-dict names) with deterministic
    statistics and gradients. Input float [B, C, H, W] -> float [B, C, H, W]."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"BatchNorm2d: input must be [B, C, H, W], got {list(x.shape)}")
        b, c, h, w = x.shape
        rows = self.normalize(x.permute(0, 2, 3, 1).reshape(-1, c))  # channels last: one row per pixel
        return rows.view(b, h, w, c).permute(0, 3, 1, 2)


def _scale_shift(mean: Tensor, invstd: Tensor, weight: Tensor | None, bias: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per-channel scale and shift float [C] with bn(x) = x * scale + shift."""
    scale = invstd if weight is None else invstd * weight
    shift = -mean * scale
    return scale, shift if bias is None else shift + bias


class _BatchNormActTrain(torch.autograd.Function):
    """Training-mode batch norm with an optional residual add and ReLU: statistics and
    gradient sums from the deterministic fixed-chunk kernels, the output in one fused pass,
    the input gradient as two fused elementwise passes."""

    @staticmethod
    def forward(ctx, x, weight, bias, residual, eps, relu):
        mean, var = batch_norm_stats(x)
        invstd = torch.rsqrt(var + eps)
        out = affine_act(x, *_scale_shift(mean, invstd, weight, bias), residual, relu)
        ctx.relu, ctx.has_residual = relu, residual is not None
        ctx.save_for_backward(x, mean, invstd, weight, out if relu else None)
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, v_out, _v_mean, _v_var):
        x, mean, invstd, weight, out = ctx.saved_tensors
        n = x.shape[0]
        v_out = v_out.contiguous()
        if ctx.relu:
            v_out = torch.ops.aten.threshold_backward(v_out, out, 0)  # ReLU's own backward: one pass
        sum_v, sum_v_centred = batch_norm_bwd_reduce(v_out, x, mean)
        v_weight = sum_v_centred * invstd  # sum of v_out * xhat
        scale, _ = _scale_shift(mean, invstd, weight, None)
        # v_x = scale / n * (n v - sum_v - xhat * v_weight) = a * v + b * x + c
        b = -scale * invstd * v_weight / n
        c = -scale * sum_v / n - b * mean
        v_x = torch.addcmul(torch.addcmul(c, x, b), v_out, scale)
        v_residual = v_out if ctx.has_residual else None
        if weight is None:
            return v_x, None, None, v_residual, None, None
        return v_x, v_weight, sum_v, v_residual, None, None  # eps and relu are constants
