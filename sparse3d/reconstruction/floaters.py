"""Floater elimination (GaussianObject, Yang et al. 2024): a statistical outlier test on
the Gaussian centres.

With few views, 3DGS grows Gaussians in empty space that no input view can rule out
("floaters"); they sit far from the surface, so their neighbours are far too. Each
centre's mean squared distance to its K = floor(sqrt(N)) nearest centres is compared with
the mean and standard deviation of that statistic over all Gaussians; those above
mean + lambda x std are removed. lambda grows over densification, from 1 (aggressive, while
the geometry is rough) to z(1 %) = 2.326 (only the clear outliers at the end).
"""

import math

import torch
from torch import Tensor

from sparse3d.core.knn import mean_neighbour_distance

LAMBDA_START = 1.0
LAMBDA_END = 2.326  # the standard normal's 99th percentile: flag about 1 % of a Gaussian tail


def floater_lambda(step: int, start: int, stop: int) -> float:
    """The threshold factor lambda at ``step``: linear from 1 at ``start`` to 2.326 at
    ``stop`` (clamped outside), the reference's schedule over the densification steps."""
    if stop <= start:
        return LAMBDA_END
    t = min(max((step - start) / (stop - start), 0.0), 1.0)
    return LAMBDA_START + t * (LAMBDA_END - LAMBDA_START)


def floater_mask(means: Tensor, lam: float, chunk: int = 1024) -> Tensor:
    """Which Gaussians are floaters.

    Args:
        means: float [N, 3] world-frame centres.
        lam: threshold factor (see :func:`floater_lambda`).
        chunk: query rows per distance block (memory ``chunk x N`` floats).

    Returns:
        bool [N], True where the mean squared distance to the floor(sqrt(N)) nearest other
        centres is at least its mean + ``lam`` x its standard deviation over all centres.
        Fewer than 5 centres, or identical statistics, flag nothing.
    """
    if means.dim() != 2 or means.shape[1] != 3 or not means.is_floating_point():
        raise ValueError(f"floater_mask: means must be float [N, 3], got {means.dtype} {list(means.shape)}")
    n = len(means)
    if n < 5:
        return torch.zeros(n, dtype=torch.bool, device=means.device)
    spread = mean_neighbour_distance(means.detach(), int(math.isqrt(n)), chunk=chunk, squared=True)
    std, mean = torch.std_mean(spread.double())
    if std == 0:
        return torch.zeros(n, dtype=torch.bool, device=means.device)
    return spread.double() >= mean + lam * std
