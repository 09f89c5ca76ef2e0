"""Batch normalisation of sparse voxel features that is bitwise reproducible at any thread
count (torch's BatchNorm1d is not: its training statistics are reduced across threads)."""

import torch
from torch import Tensor, nn

from sparse3d.core.batch_norm import batch_norm_bwd_reduce, batch_norm_stats


class SparseBatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` over voxel features float [N, C] with deterministic statistics and
    gradients; same parameters, buffers and state-dict names (weight, bias, running_mean,
    running_var, num_batches_tracked), so it loads spconv / OpenPCDet checkpoints. In eval
    mode it is torch's (elementwise) batch norm."""

    def forward(self, feats: Tensor) -> Tensor:
        if not self.training:
            return super().forward(feats)
        if feats.dim() != 2 or feats.shape[1] != self.num_features:
            raise ValueError(f"SparseBatchNorm1d: feats must be [N, {self.num_features}], got {list(feats.shape)}")
        n = feats.shape[0]
        if n < 2:
            raise ValueError(f"SparseBatchNorm1d: training needs at least 2 voxels, got {n}")
        out, mean, var = _BatchNormTrain.apply(feats, self.weight, self.bias, self.eps)
        if self.track_running_stats:
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                self.running_mean.lerp_(mean, momentum)
                self.running_var.lerp_(var * (n / (n - 1)), momentum)  # unbiased, as torch
        return out


class _BatchNormTrain(torch.autograd.Function):
    """Training-mode batch norm: statistics and gradient sums from the deterministic
    fixed-chunk kernels, the rest as two fused elementwise passes (few parallel regions)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        mean, var = batch_norm_stats(x)
        invstd = torch.rsqrt(var + eps)
        scale = invstd * weight if weight is not None else invstd
        shift = (bias if bias is not None else torch.zeros_like(mean)) - mean * scale
        ctx.save_for_backward(x, mean, invstd, weight)
        return torch.addcmul(shift, x, scale), mean, var

    @staticmethod
    def backward(ctx, v_out, _v_mean, _v_var):
        x, mean, invstd, weight = ctx.saved_tensors
        n = x.shape[0]
        v_out = v_out.contiguous()
        sum_v, sum_v_centred = batch_norm_bwd_reduce(v_out, x, mean)
        v_weight = sum_v_centred * invstd  # sum of v_out * xhat
        scale = invstd * weight if weight is not None else invstd
        # v_x = scale / n * (n v - sum_v - xhat * v_weight) = a * v + b * x + c
        b = -scale * invstd * v_weight / n
        c = -scale * sum_v / n - b * mean
        v_x = torch.addcmul(torch.addcmul(c, x, b), v_out, scale)
        if weight is None:
            return v_x, None, None, None
        return v_x, v_weight, sum_v, None  # eps is not differentiable
