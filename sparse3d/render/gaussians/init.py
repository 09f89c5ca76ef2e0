"""Initial 3-D Gaussians for splatting methods: the scene scale, random or given start
points, and the 3DGS parameters at those points (Kerbl et al. 2023).

Parameters follow the 3DGS layout that :func:`sparse3d.render.rasterize_gaussians` and
the densification strategies read: means, log-scales, quaternions (w, x, y, z), opacity
logits, and SH coefficients split into the degree-0 band ``sh0`` and the rest ``shN``.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from sparse3d.core.knn import mean_neighbour_distance
from sparse3d.geometry.cameras import Cameras
from sparse3d.render.gaussians.sh import SH_C0, num_sh_bases

# 3DGS sizes each Gaussian by the mean distance to this many nearest neighbours.
NUM_SCALE_NEIGHBOURS = 3


def scene_scale(cameras: Cameras) -> float:
    """1.1 x the largest distance of a camera centre from their mean (the 3DGS convention),
    in world units."""
    centers = cameras.centers
    return 1.1 * float((centers - centers.mean(0)).norm(dim=1).max())


def random_points(num: int, half_size: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Uniform random start points and colours.

    Args:
        num: number of points N.
        half_size: the points fill the cube [-half_size, half_size]^3 (world frame).
        generator: the source of randomness (CPU), drawn from for the points, then the colours.

    Returns:
        float32 [N, 3] points and float32 [N, 3] RGB in [0, 1).
    """
    points = half_size * (torch.rand(num, 3, generator=generator) * 2 - 1)
    rgbs = torch.rand(num, 3, generator=generator)
    return points, rgbs


def initial_gaussians(
    points: Tensor, rgbs: Tensor, sh_degree: int, opacity: float, generator: torch.Generator
) -> dict[str, Tensor]:
    """3DGS parameters of N Gaussians centred on ``points``.

    Each Gaussian is isotropic with the mean distance to its 3 nearest neighbours as
    standard deviation, randomly rotated, with one opacity, and with the degree-0 SH
    colour ``rgbs`` (higher bands zero).

    Args:
        points: float [N, 3] world-frame centres, N > 3.
        rgbs: float [N, 3] colours in [0, 1].
        sh_degree: highest SH degree the colours will use (0..3).
        opacity: initial opacity of every Gaussian, in (0, 1).
        generator: the source of the random rotations (CPU).

    Returns:
        CPU tensors "means" float [N, 3], "scales" float [N, 3] (log), "quats" float
        [N, 4] (unit, w, x, y, z), "opacities" float [N] (logit), "sh0" float [N, 1, 3]
        and "shN" float [N, (sh_degree + 1)^2 - 1, 3].
    """
    if points.shape != rgbs.shape or points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(
            f"initial_gaussians: points and rgbs must both be float [N, 3], got {list(points.shape)} and {list(rgbs.shape)}"
        )
    n = len(points)
    nearest = mean_neighbour_distance(points, k=NUM_SCALE_NEIGHBOURS)  # [N]
    params = {
        "means": points,
        # Coincident points would give log(0): keep a tiny positive size instead.
        "scales": torch.log(nearest.clamp_min(1e-7))[:, None].repeat(1, 3),
        "quats": F.normalize(torch.rand(n, 4, generator=generator), dim=-1),
        "opacities": torch.logit(torch.full((n,), opacity)),
        # Inverse of the degree-0 colour: rgb = SH_C0 * sh0 + 0.5.
        "sh0": ((rgbs - 0.5) / SH_C0)[:, None, :],
        "shN": torch.zeros(n, num_sh_bases(sh_degree) - 1, 3),
    }
    return {k: v.contiguous() for k, v in params.items()}
