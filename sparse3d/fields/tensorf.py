"""The dense baselines: TensoRF's vector-matrix field (Chen et al. 2022,
https://arxiv.org/abs/2203.09517) and a plain density/colour voxel grid (DVGO's coarse
stage), which Strivec trains first to find where the surface is.

TensoRF-VM factorises a dense feature volume over the scene box into, per axis pair, R
matrices (planes) times R vectors (lines) along the third axis: density sums the
products over components and axes, appearance concatenates them and a basis maps them to
the shader's feature. Every parameter exists whether the space is empty or not, which is
what Strivec's sparse local tensors save.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparse3d.core.elementwise import sigmoid
from sparse3d.engine.config import at_least
from sparse3d.fields.shading import DensityActivation, FeatureShader, ShadedFieldConfig
from sparse3d.nn.linear import Linear

# Plane axes and the line axis of each of TensoRF's three VM pairs.
_PLANES = ((0, 1), (0, 2), (1, 2))
_LINES = (2, 1, 0)


@dataclass
class TensorVMConfig(ShadedFieldConfig):
    """TensoRF-VM (defaults: "VM-192" on Synthetic-NeRF)."""

    voxels: int = field(default=128**3, metadata=at_least(8))
    """Voxels of the feature volume at the start: the resolution per axis follows from the
    scene box (TensoRF's N_voxel_init)."""
    final_voxels: int = field(default=300**3, metadata=at_least(8))
    """Voxels after the last upsampling (N_voxel_final)."""
    density_components: int = field(default=16, metadata=at_least(1))
    """Components per plane/line pair for density."""
    app_components: int = field(default=48, metadata=at_least(1))
    """Components per plane/line pair for appearance."""


def resolution(lower: Tensor, upper: Tensor, voxels: int) -> list[int]:
    """Cells per axis of a box ``lower``-``upper`` [3] split into about ``voxels`` cubes
    (TensoRF's N_to_reso)."""
    extent = upper - lower
    size = float((extent.prod() / voxels) ** (1 / 3))
    return [max(2, int(e / size)) for e in extent.tolist()]


def voxel_schedule(start: int, final: int, upsamples: int) -> list[int]:
    """Voxel counts after each of ``upsamples`` upsamplings, evenly in log space from
    ``start`` to ``final`` (TensoRF's N_voxel_list)."""
    logs = torch.linspace(torch.log(torch.tensor(float(start))), torch.log(torch.tensor(float(final))), upsamples + 1)
    return [int(round(float(x))) for x in logs.exp()[1:]]


class DenseField(nn.Module):
    """A field whose every point has its own features: nothing to look up first."""

    def lookups(self, points: Tensor) -> None:
        return None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class TensorVMField(DenseField):
    """TensoRF-VM over the scene box ``lower``-``upper``."""

    def __init__(self, config: TensorVMConfig, lower: Tensor, upper: Tensor, generator: torch.Generator) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("lower", lower.float().clone())
        self.register_buffer("upper", upper.float().clone())
        reso = resolution(lower, upper, config.voxels)
        std, rs, ra = config.init_std, config.density_components, config.app_components

        def planes(r: int) -> nn.ParameterList:
            return nn.ParameterList(
                [nn.Parameter(std * torch.randn(1, r, reso[b], reso[a], generator=generator)) for a, b in _PLANES]
            )

        def lines(r: int) -> nn.ParameterList:
            return nn.ParameterList([nn.Parameter(std * torch.randn(1, r, reso[c], 1, generator=generator)) for c in _LINES])

        self.density_planes, self.density_lines = planes(rs), lines(rs)
        self.app_planes, self.app_lines = planes(ra), lines(ra)
        self.basis = Linear(3 * ra, config.app_dim, bias=False)
        self.shader = FeatureShader(config.app_dim, config.hidden)

    @property
    def resolution(self) -> list[int]:
        """Cells per axis (x, y, z) now: the lengths of the lines along each axis."""
        by_axis = {c: line.shape[2] for c, line in zip(_LINES, self.density_lines)}
        return [by_axis[a] for a in range(3)]

    def _normalised(self, points: Tensor) -> Tensor:
        return (points - self.lower) / (self.upper - self.lower) * 2 - 1

    def _vm(self, planes: nn.ParameterList, lines: nn.ParameterList, points: Tensor) -> Tensor:
        """float [S, 3, R] plane x line products of the three pairs at ``points``."""
        x = self._normalised(points)
        out = []
        for plane, line, (a, b), c in zip(planes, lines, _PLANES, _LINES):
            grid_p = x[:, [a, b]][None, :, None, :]  # grid_sample's (x, y) = (width, height)
            grid_l = torch.stack([torch.zeros_like(x[:, c]), x[:, c]], -1)[None, :, None, :]
            p = F.grid_sample(plane, grid_p, mode="bilinear", align_corners=True)[0, :, :, 0]
            v = F.grid_sample(line, grid_l, mode="bilinear", align_corners=True)[0, :, :, 0]
            out.append((p * v).T)
        return torch.stack(out, 1)

    def sigma(self, points: Tensor, lookups: None = None) -> Tensor:
        """float [S] densities at ``points`` float32 [S, 3]."""
        feature = self._vm(self.density_planes, self.density_lines, points).sum((1, 2))
        return self.config.density(feature)

    def rgb(self, points: Tensor, dirs: Tensor, lookups: None = None) -> Tensor:
        """float [S, 3] colours at ``points`` seen along unit ``dirs``."""
        return self.shader(self.basis(self._vm(self.app_planes, self.app_lines, points).flatten(1)), dirs)

    def upsample(self, voxels: int) -> None:
        """Resamples the planes and lines (bilinearly / linearly) to the resolution of
        ``voxels`` cells; the caller re-registers the new parameters with its optimisers."""
        reso = resolution(self.lower, self.upper, voxels)
        for planes, lines in ((self.density_planes, self.density_lines), (self.app_planes, self.app_lines)):
            for i, ((a, b), c) in enumerate(zip(_PLANES, _LINES)):
                planes[i] = nn.Parameter(F.interpolate(planes[i].data, size=(reso[b], reso[a]), mode="bilinear", align_corners=True))
                lines[i] = nn.Parameter(F.interpolate(lines[i].data, size=(reso[c], 1), mode="bilinear", align_corners=True))

    def shrink(self, lower: Tensor, upper: Tensor) -> None:
        """Crops the planes and lines to the fewest nodes whose span holds the box
        ``lower``-``upper`` float32 [3] (TensoRF's shrink to the alpha mask's bounds): the
        field is unchanged inside, and later upsamplings spend their voxels on it alone.
        The caller re-registers the new parameters with its optimisers."""
        nodes = torch.tensor(self.resolution, device=self.lower.device)
        cell = (self.upper - self.lower) / (nodes - 1)
        first = torch.minimum(((lower - self.lower) / cell).floor().long().clamp(min=0), nodes - 2)
        last = torch.maximum(torch.minimum(((upper - self.lower) / cell).ceil().long(), nodes - 1), first + 1)
        for planes, lines in ((self.density_planes, self.density_lines), (self.app_planes, self.app_lines)):
            for i, ((a, b), c) in enumerate(zip(_PLANES, _LINES)):
                planes[i] = nn.Parameter(planes[i].data[:, :, first[b] : last[b] + 1, first[a] : last[a] + 1].clone())
                lines[i] = nn.Parameter(lines[i].data[:, :, first[c] : last[c] + 1].clone())
        self.lower, self.upper = self.lower + first * cell, self.lower + last * cell

    def density_vectors(self) -> list[nn.Parameter]:
        return [*self.density_planes, *self.density_lines]

    def app_vectors(self) -> list[nn.Parameter]:
        return [*self.app_planes, *self.app_lines]

    def network(self) -> list[nn.Parameter]:
        return [self.basis.weight, *self.shader.parameters()]

    def l1_density(self) -> Tensor:
        """Mean absolute value of the density planes plus that of the density lines
        (TensoRF's L1 term)."""
        planes = sum(p.abs().sum() for p in self.density_planes) / sum(p.numel() for p in self.density_planes)
        lines = sum(p.abs().sum() for p in self.density_lines) / sum(p.numel() for p in self.density_lines)
        return planes + lines


@dataclass
class DensityGridConfig(DensityActivation):
    """A dense voxel grid of density and colour (DVGO's coarse stage)."""

    voxels: int = field(default=64**3, metadata=at_least(8))
    """Voxels of the grid (resolution per axis from the scene box)."""


class DensityGridField(DenseField):
    """Trilinear density and view-independent colour on a dense grid over the scene box."""

    def __init__(self, config: DensityGridConfig, lower: Tensor, upper: Tensor) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("lower", lower.float().clone())
        self.register_buffer("upper", upper.float().clone())
        self.resolution = resolution(lower, upper, config.voxels)
        nx, ny, nz = self.resolution
        self.density = nn.Parameter(torch.zeros(1, 1, nz, ny, nx))
        self.color = nn.Parameter(torch.zeros(1, 3, nz, ny, nx))

    def nodes(self) -> Tensor:
        """float32 [nx * ny * nz, 3] world positions of the grid's values."""
        axes = [torch.linspace(float(lo), float(hi), n, device=self.lower.device)
                for lo, hi, n in zip(self.lower, self.upper, self.resolution)]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)

    def _sample(self, volume: Tensor, points: Tensor) -> Tensor:
        x = (points - self.lower) / (self.upper - self.lower) * 2 - 1
        return F.grid_sample(volume, x[None, :, None, None, :], mode="bilinear", align_corners=True)[0, :, :, 0, 0].T

    def sigma(self, points: Tensor, lookups: None = None) -> Tensor:
        """float [S] densities at ``points`` float32 [S, 3]."""
        value = self._sample(self.density, points)[:, 0]
        return self.config.density(value)

    def rgb(self, points: Tensor, dirs: Tensor, lookups: None = None) -> Tensor:
        """float [S, 3] colours at ``points`` (the same from every direction)."""
        return sigmoid(self._sample(self.color, points))
