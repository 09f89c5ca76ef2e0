"""Strivec's radiance field: sparse local tri-vector tensors on several levels (Gao et al.
2023, https://arxiv.org/abs/2307.13226).

Level l places one local tensor on every occupied voxel of a grid of pitch
``voxel_sizes[l]`` (voxels holding a point of the coarse geometry); each tensor is a cube
of half-size ``half_sizes[l]`` (0.75 of the pitch, so neighbours overlap) holding a CP
factorisation for density (``density_components[l]`` components) and one for appearance
(``app_components[l]``), each component three vectors of ``dims[l]`` values. A sample
point takes the K nearest tensors of each level whose cube holds it
(:func:`sparse3d.core.box_lookup.box_lookup`), evaluates them (:func:`trivector_features`)
and blends them by inverse distance; density sums over the levels, appearance sums the
levels' basis projections, and the TensoRF feature shader turns it into colour. Because
tensors exist only near the surface, the parameter count follows the surface area, not
the volume.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparse3d.core.box_lookup import box_lookup
from sparse3d.core.grid import VoxelGrid
from sparse3d.engine.config import at_least
from sparse3d.fields.shading import FeatureShader, ShadedFieldConfig
from sparse3d.fields.trivector import trivector_features
from sparse3d.nn.linear import Linear


@dataclass
class StrivecFieldConfig(ShadedFieldConfig):
    """The levels of local tensors and the shader (defaults: Strivec's Synthetic-NeRF
    configuration, "Ours-48")."""

    voxel_sizes: tuple[float, ...] = (0.4, 0.2, 0.1)
    """Pitch of each level's placement grid, world units (one tensor per occupied voxel)."""
    half_sizes: tuple[float, ...] = (0.3, 0.15, 0.075)
    """Half the edge of each level's tensor cubes, below the level's pitch."""
    dims: tuple[int, ...] = (29, 15, 7)
    """Values per vector at the start, per level (>= 2)."""
    final_dims: tuple[int, ...] = (121, 61, 31)
    """Values per vector after the last upsampling, per level."""
    density_components: tuple[int, ...] = (32, 24, 16)
    """CP components of density, per level."""
    app_components: tuple[int, ...] = (48, 48, 48)
    """CP components of appearance, per level."""
    k: int = field(default=4, metadata=at_least(1))
    """Tensors blended per sample and level (the nearest ones that hold it)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        n = len(self.voxel_sizes)
        per_level = {"half_sizes": self.half_sizes, "dims": self.dims, "final_dims": self.final_dims,
                     "density_components": self.density_components, "app_components": self.app_components}
        for name, values in per_level.items():
            if len(values) != n:
                raise ValueError(f"StrivecFieldConfig.{name} needs one value per level ({n}), got {list(values)}")
        for level, (v, h, d, d_final) in enumerate(zip(self.voxel_sizes, self.half_sizes, self.dims, self.final_dims)):
            if not 0 < h < v:
                raise ValueError(f"StrivecFieldConfig: level {level}'s half size {h} must be in (0, voxel size {v})")
            if not 2 <= d <= d_final:
                raise ValueError(f"StrivecFieldConfig: level {level} needs 2 <= dims {d} <= final_dims {d_final}")


class LocalTensors(nn.Module):
    """One level: CP tensors on the occupied voxels of a grid."""

    def __init__(self, grid: VoxelGrid, occupied: Tensor, half_size: float, density_components: int,
                 app_components: int, dim: int, app_dim: int, init_std: float, generator: torch.Generator) -> None:
        super().__init__()
        self.grid, self.half_size = grid, half_size
        self.register_buffer("occupied", occupied)  # int64 [N] keys
        self.register_buffer("centers", grid.centers(grid.coords(occupied)))  # float32 [N, 3]
        n = len(occupied)
        self.density = nn.Parameter(init_std * torch.randn(n, 3, density_components, dim, generator=generator))
        self.appearance = nn.Parameter(init_std * torch.randn(n, 3, app_components, dim, generator=generator))
        self.basis = Linear(app_components, app_dim, bias=False)

    @property
    def num_tensors(self) -> int:
        return len(self.occupied)

    def lookup(self, points: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """int64 [S, k] tensors holding each point (nearest first, -1 padded) and float32
        [S, k] their inverse-distance weights."""
        return box_lookup(points, self.grid, self.occupied, self.half_size, k)

    def density_feature(self, points: Tensor, index: Tensor, weights: Tensor) -> Tensor:
        """float [S] the blended density feature (sum over components)."""
        return trivector_features(points, index, weights, self.density, self.centers, self.half_size).sum(-1)

    def app_feature(self, points: Tensor, index: Tensor, weights: Tensor) -> Tensor:
        """float [S, app_dim] the blended appearance components through the basis."""
        return self.basis(trivector_features(points, index, weights, self.appearance, self.centers, self.half_size))

    def keep_tensors(self, keep: Tensor) -> None:
        """Keeps only the tensors ``keep`` bool [N] (new parameters: their rows)."""
        self.occupied, self.centers = self.occupied[keep], self.centers[keep]
        self.density = nn.Parameter(self.density.detach()[keep])
        self.appearance = nn.Parameter(self.appearance.detach()[keep])

    def boxes(self) -> tuple[Tensor, Tensor]:
        """float32 [N, 3] lower and [N, 3] upper corners of the tensors' cubes."""
        return self.centers - self.half_size, self.centers + self.half_size


@dataclass(frozen=True)
class Lookups:
    """Each level's tensors and weights for a set of points."""

    index: list[Tensor]
    weights: list[Tensor]

    def select(self, keep: Tensor) -> "Lookups":
        """The lookups of the points ``keep`` (bool [S])."""
        return Lookups([i[keep] for i in self.index], [w[keep] for w in self.weights])


class StrivecField(nn.Module):
    """Density and colour of the levels of local tensors."""

    def __init__(self, config: StrivecFieldConfig, lower: Tensor, upper: Tensor, points: Tensor,
                 generator: torch.Generator) -> None:
        """Places the tensors on the voxels of each level that hold any of ``points``
        float32 [P, 3] (the coarse geometry) inside the scene box ``lower``, ``upper``
        float32 [3]; every level's grid starts at ``lower``."""
        super().__init__()
        self.config = config
        points = points[((points >= lower) & (points < upper)).all(1)]
        if len(points) == 0:
            raise ValueError("StrivecField: the coarse geometry has no points inside the scene box to place local tensors on")
        levels = []
        for v, h, rs, ra, d in zip(config.voxel_sizes, config.half_sizes, config.density_components,
                                    config.app_components, config.dims):
            grid = VoxelGrid.covering(lower, upper, v)
            occupied = grid.keys(grid.cells(points)).unique()
            levels.append(LocalTensors(grid, occupied, h, rs, ra, d, config.app_dim, config.init_std, generator))
        self.levels = nn.ModuleList(levels)
        self.shader = FeatureShader(config.app_dim, config.hidden)

    def lookups(self, points: Tensor) -> Lookups:
        """Every level's tensors holding ``points`` float32 [S, 3]."""
        found = [level.lookup(points, self.config.k) for level in self.levels]
        return Lookups([i for i, _ in found], [w for _, w in found])

    def covered(self, lookups: Lookups) -> Tensor:
        """bool [S] points held by a tensor of some level."""
        return torch.stack([i[:, 0] >= 0 for i in lookups.index]).any(0)

    def sigma(self, points: Tensor, lookups: Lookups | None = None) -> Tensor:
        """float [S] densities (world units^-1) at ``points`` float32 [S, 3]."""
        lookups = self.lookups(points) if lookups is None else lookups
        feature = sum(level.density_feature(points, i, w) for level, i, w in zip(self.levels, lookups.index, lookups.weights))
        return self.config.density(feature)

    def rgb(self, points: Tensor, dirs: Tensor, lookups: Lookups) -> Tensor:
        """float [S, 3] colours at ``points`` seen along unit ``dirs`` float32 [S, 3]."""
        feature = sum(level.app_feature(points, i, w) for level, i, w in zip(self.levels, lookups.index, lookups.weights))
        return self.shader(feature, dirs)

    def density_vectors(self) -> list[nn.Parameter]:
        return [level.density for level in self.levels]

    def app_vectors(self) -> list[nn.Parameter]:
        return [level.appearance for level in self.levels]

    def network(self) -> list[nn.Parameter]:
        """The basis matrices and the shader."""
        return [level.basis.weight for level in self.levels] + list(self.shader.parameters())

    def l1_density(self) -> Tensor:
        """Mean absolute value of the density vectors (the sparsity regulariser)."""
        total = sum(level.density.abs().sum() for level in self.levels)
        return total / sum(level.density.numel() for level in self.levels)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def upsampled_vectors(vectors: Tensor, dim: int) -> Tensor:
    """float [N, 3, R, dim] ``vectors`` [N, 3, R, D] linearly resampled to ``dim`` values
    spanning the same cube (the end values stay where they are)."""
    n, _, r, d = vectors.shape
    flat = vectors.reshape(n * 3 * r, 1, d)
    return F.interpolate(flat, size=dim, mode="linear", align_corners=True).reshape(n, 3, r, dim)


def dims_schedule(start: int, final: int, upsamples: int) -> list[int]:
    """The vector length after each of ``upsamples`` upsamplings, evenly from ``start`` to
    ``final`` (Strivec's own trend is close: 29, 43, 65, 85, 103, 121); [] if none."""
    return [round(start + (final - start) * (i + 1) / upsamples) for i in range(upsamples)]
