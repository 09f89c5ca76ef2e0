"""A radiance field's surface as a triangle mesh: marching cubes (scikit-image) on the
opacity of its density over one sampling step, on a regular grid over the scene box
(TensoRF's mesh export)."""

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from sparse3d.engine.scene import Mesh


class MarchingCubesDependencyError(ImportError):
    """scikit-image, which extracts the mesh, is not installed."""


def opacity_grid(sigma: Callable[[Tensor], Tensor], lower: Tensor, upper: Tensor, resolution: int, step: float,
                 chunk: int = 65536) -> tuple[Tensor, float]:
    """float32 [nx, ny, nz] the opacity ``1 - exp(-sigma step)`` at the nodes of a grid of
    ``resolution`` nodes along the box's longest side (``lower``, ``upper`` float [3]),
    evaluated ``chunk`` points at a time by ``sigma`` (float32 [P, 3] world points ->
    float [P] densities), and the grid's spacing; node (i, j, k) lies at
    ``lower + (i, j, k) * spacing``."""
    extent = upper - lower
    spacing = float(extent.max()) / (resolution - 1)
    counts = [max(2, int(round(float(e) / spacing)) + 1) for e in extent]
    axes = [torch.linspace(float(lo), float(lo) + (n - 1) * spacing, n, device=lower.device) for lo, n in zip(lower, counts)]
    points = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    with torch.no_grad():
        alpha = torch.cat([1 - torch.exp(-sigma(points[i : i + chunk]) * step) for i in range(0, len(points), chunk)])
    return alpha.reshape(counts).float().cpu(), spacing


def marching_cubes_mesh(grid: Tensor, lower: Tensor, spacing: float, level: float) -> Mesh:
    """The ``level`` isosurface of ``grid`` [nx, ny, nz] (node (i, j, k) at
    ``lower + (i, j, k) * spacing``, world frame), facing out of the higher values.

    Raises:
        MarchingCubesDependencyError: scikit-image is missing.
        ValueError: the grid never reaches ``level`` (no surface to extract).
    """
    try:
        from skimage.measure import marching_cubes
    except ImportError as err:
        raise MarchingCubesDependencyError(
            "sparse3d-export density needs scikit-image for marching cubes: pip install 'sparse3d[mesh]'"
        ) from err
    values = grid.numpy()
    if not values.min() < level < values.max():
        raise ValueError(
            f"the opacity grid spans [{values.min():.3g}, {values.max():.3g}]: it never crosses level {level}, "
            "so there is no surface (lower level=, or check that the run has trained)"
        )
    verts, faces, _, _ = marching_cubes(values, level=level, spacing=(spacing,) * 3)
    vertices = torch.from_numpy((verts + lower.cpu().numpy()).astype(np.float32))
    return Mesh(vertices, torch.from_numpy(faces.astype(np.int64)), name="density surface")
