"""k-nearest-neighbour distances by brute force (pure torch, chunked over query rows).

Used to size initial Gaussians (3DGS sets each one's scale from the mean distance to its
three nearest neighbours) and to find floaters (GaussianObject's statistical outlier test
on the mean squared distance to the sqrt(N) nearest centres). Brute force keeps the result exact and device-agnostic; the
chunking bounds memory to ``chunk x N`` distances at a time.
"""

import torch
from torch import Tensor


def mean_neighbour_distance(points: Tensor, k: int, chunk: int = 4096, squared: bool = False) -> Tensor:
    """Mean Euclidean distance of each point to its k nearest other points (or, with
    ``squared``, the mean of the squared distances: pytorch3d ``knn_points``' convention).

    The k + 1 nearest points of a point include itself (at distance 0), which is dropped;
    a duplicate of the point counts as a neighbour at distance 0.

    Args:
        points: float [N, D] points, N > k.
        k: number of neighbours, >= 1.
        chunk: query rows per distance block (memory is ``chunk x N`` floats).
        squared: average squared distances instead of distances.

    Returns:
        float [N], the dtype and device of ``points``.
    """
    if not points.is_floating_point() or points.dim() != 2:
        raise ValueError(f"mean_neighbour_distance: points must be float [N, D], got {points.dtype} {list(points.shape)}")
    if not 1 <= k < len(points):
        raise ValueError(f"mean_neighbour_distance: need 1 <= k < N, got k={k} for N={len(points)} points")
    if chunk < 1:
        raise ValueError(f"mean_neighbour_distance: chunk must be >= 1, got {chunk}")
    out = []
    for start in range(0, len(points), chunk):
        d = torch.cdist(points[start : start + chunk], points)  # [chunk, N]
        nearest = d.topk(k + 1, largest=False).values[:, 1:]
        out.append((nearest.square() if squared else nearest).mean(dim=1))
    return torch.cat(out)
