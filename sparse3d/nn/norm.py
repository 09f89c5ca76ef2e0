"""Batch normalisation that is bitwise reproducible at any thread count (torch's batch
norms are not: their training statistics are reduced across threads): of sparse voxel
features, fused with the residual add and ReLU that follow it in sparse residual blocks,
and of dense [B, C, H, W] maps (the BEV backbones and heads), through the same kernels.

Synchronised across processes: in training mode, when ``torch.distributed`` has a group of
more than one process (``torchrun``; see :func:`sparse3d.engine.distributed.init_world`),
the batch statistics are those of every process's rows together, and the backward pass
reduces its two per-channel sums over every process too; so N processes, each with its
share of a batch, compute the batch norm (output, input gradient, running statistics) of
the whole batch, as one process would. Each process still returns the weight and bias
gradients of its own rows: the trainer averages parameter gradients over processes, as
for every other layer. Every process must therefore run the same batch norms in the same
order, forward and backward (as the same network on every process does). In evaluation
mode (running statistics), or with one process, nothing is exchanged.
"""

import torch
import torch.distributed as dist
from torch import Tensor, nn

from sparse3d.core.batch_norm import affine_act, batch_norm_bwd_reduce, batch_norm_stats
from sparse3d.core.column_sum import column_sum


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
            statistics are used and, when tracked, folded into the running ones; in training
            mode under ``torch.distributed`` they are those of all processes' rows (see the
            module docstring), and N may be 0 or 1 on a process as long as the rows of all
            processes number at least 2.
        """
        name = type(self).__name__
        if feats.dim() != 2 or feats.shape[1] != self.num_features:
            raise ValueError(f"{name}: feats must be [N, {self.num_features}], got {list(feats.shape)}")
        if residual is not None and residual.shape != feats.shape:
            raise ValueError(f"{name}: residual must be {list(feats.shape)}, got {list(residual.shape)}")
        if not self.training and self.track_running_stats:
            invstd = torch.rsqrt(self.running_var + self.eps)
            return affine_act(feats, *_scale_shift(self.running_mean, invstd, self.weight, self.bias), residual, relu)
        sync = self.training and _process_count() > 1
        n = feats.shape[0]
        with torch.no_grad():  # the statistics are constants of the autograd formula
            mean, var = batch_norm_stats(feats)
            if sync:
                mean, var, n = _global_stats(mean, var, n)
        if n < 2:
            where = " over all processes" if sync else ""
            raise ValueError(f"{name}: training needs at least 2 rows{where}, got {n}")
        out = _BatchNormActTrain.apply(feats, self.weight, self.bias, residual, mean, var, n, self.eps, relu, sync)
        if self.training and self.track_running_stats:
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                self.running_mean.lerp_(mean, momentum)
                self.running_var.lerp_(var * (n / (n - 1)), momentum)  # unbiased, as torch
        return out


class SparseBatchNorm1d(_RowBatchNorm, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` over voxel features float [N, C] with deterministic statistics and
    gradients, synchronised across processes in distributed training (see the module
    docstring); same parameters, buffers and state-dict names (weight, bias, running_mean,
    running_var, num_batches_tracked), so it loads spconv / OpenPCDet checkpoints.

    :meth:`normalize` also adds a residual and applies ReLU in the same pass over the
    features; ``SparseSequential`` uses it for a batch norm followed by ``nn.ReLU``.
    """

    def forward(self, feats: Tensor) -> Tensor:
        return self.normalize(feats)


class BatchNorm2d(_RowBatchNorm, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters, buffers and state-dict names) with deterministic
    statistics and gradients, synchronised across processes in distributed training (see the
    module docstring). Input float [B, C, H, W] -> float [B, C, H, W]."""

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


def _process_count() -> int:
    """Processes in ``torch.distributed``'s default group, 1 without one. (``nn`` sits
    beside ``engine`` in the layer order, so it asks torch.distributed itself.)"""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _gather(values: Tensor) -> Tensor:
    """Every process's float [K] ``values``, stacked in rank order: [W, K]."""
    parts = [torch.empty_like(values) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, values.contiguous())
    return torch.stack(parts)


def _global_stats(mean: Tensor, var: Tensor, n: int) -> tuple[Tensor, Tensor, int]:
    """The mean and biased variance of all processes' rows, from each process's.

    Every process's (count, mean, M2 = n * var) is gathered in float64 and combined in rank
    order (the two-pass form of Chan et al.'s merge: the global mean first, then each
    process's M2 plus its count times its mean's squared offset), so every process gets the
    same bits, whatever the thread count.

    Args:
        mean, var: float [C], this process's statistics of its ``n`` rows (0 when n = 0).
        n: this process's row count.

    Returns:
        mean, var: float [C] in the dtype of the inputs; the total row count.
    """
    c = mean.shape[0]
    count = torch.full((1,), float(n), dtype=torch.float64, device=mean.device)
    gathered = _gather(torch.cat([count, mean.double(), var.double() * n]))  # [W, 1 + 2C]
    counts, means, m2s = gathered[:, :1], gathered[:, 1 : c + 1], gathered[:, c + 1 :]
    total = column_sum(counts)  # [1], exact: integers far below 2**53
    divisor = total.clamp_min(1)
    global_mean = column_sum(counts * means) / divisor
    m2 = column_sum(m2s + counts * (means - global_mean) ** 2)
    return global_mean.to(mean.dtype), (m2 / divisor).to(var.dtype), int(total.item())


def _global_sums(sum_v: Tensor, sum_v_centred: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`sparse3d.core.batch_norm.batch_norm_bwd_reduce`'s two sums float [C] over all
    processes: gathered in float64 and added in rank order (the same bits everywhere)."""
    c = sum_v.shape[0]
    total = column_sum(_gather(torch.cat([sum_v, sum_v_centred]).double())).to(sum_v.dtype)
    return total[:c], total[c:]


class _BatchNormActTrain(torch.autograd.Function):
    """Training-mode batch norm with an optional residual add and ReLU, given the batch
    statistics: the output in one fused pass; the gradient sums from the deterministic
    fixed-chunk kernel (over all processes when ``sync``), the input gradient as two fused
    elementwise passes."""

    @staticmethod
    def forward(ctx, x, weight, bias, residual, mean, var, count, eps, relu, sync):
        invstd = torch.rsqrt(var + eps)
        out = affine_act(x, *_scale_shift(mean, invstd, weight, bias), residual, relu)
        ctx.relu, ctx.has_residual, ctx.count, ctx.sync = relu, residual is not None, count, sync
        ctx.save_for_backward(x, mean, invstd, weight, out if relu else None)
        return out

    @staticmethod
    def backward(ctx, v_out):
        x, mean, invstd, weight, out = ctx.saved_tensors
        v_out = v_out.contiguous()
        if ctx.relu:
            v_out = torch.ops.aten.threshold_backward(v_out, out, 0)  # ReLU's own backward: one pass
        sum_v, sum_v_centred = batch_norm_bwd_reduce(v_out, x, mean)
        # The parameter gradients are those of this process's rows; the input gradient goes
        # through the statistics of all rows, so it needs the sums of all rows.
        v_weight = sum_v_centred * invstd  # sum of v_out * xhat
        v_weight_all, sum_v_all = v_weight, sum_v
        if ctx.sync:
            sum_v_all, sum_v_centred_all = _global_sums(sum_v, sum_v_centred)
            v_weight_all = sum_v_centred_all * invstd
        n = ctx.count
        scale, _ = _scale_shift(mean, invstd, weight, None)
        # v_x = scale / n * (n v - sum_v - xhat * v_weight) = a * v + b * x + c
        b = -scale * invstd * v_weight_all / n
        c = -scale * sum_v_all / n - b * mean
        v_x = torch.addcmul(torch.addcmul(c, x, b), v_out, scale)
        v_residual = v_out if ctx.has_residual else None
        constants = (None,) * 6  # mean, var, count, eps, relu, sync
        if weight is None:
            return v_x, None, None, v_residual, *constants
        return v_x, v_weight, sum_v, v_residual, *constants
