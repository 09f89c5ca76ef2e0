"""The coarse stage of Strivec: a dense density / colour grid (DVGO's coarse stage),
trained briefly so that its visible cells tell where the surface is."""

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from sparse3d.core.grid import VoxelGrid
from sparse3d.engine.config import between
from sparse3d.engine.distributed import World
from sparse3d.fields.occupancy import full_occupancy
from sparse3d.fields.tensorf import DensityGridConfig, DensityGridField
from sparse3d.io.atomic import save_torch_atomic
from sparse3d.methods.radiance_field import RadianceFieldConfig, RadianceFieldMethod

SURFACE_POINTS = "points.pt"
"""The coarse geometry a finished density-grid run leaves in its directory."""


class DensityGrid(RadianceFieldMethod):
    """A dense density / colour grid over the scene box, sampled everywhere in it."""

    config: "DensityGridMethodConfig"

    def __init__(self, config: "DensityGridMethodConfig", world: World, device: torch.device) -> None:
        super().__init__(config, world, device)
        self.field = DensityGridField(config.model, self.box_lower, self.box_upper).to(device)
        self.cell = float(((self.box_upper - self.box_lower) / torch.tensor(self.field.resolution)).mean())
        grid = VoxelGrid.covering(self.box_lower, self.box_upper, config.render.occupancy_voxel)
        self.occupancy = full_occupancy(grid, device)

    def sample_step(self) -> float:
        return self.config.render.step_ratio * self.cell

    def param_group_params(self) -> dict[str, list[nn.Parameter]]:
        return {"density": [self.field.density], "appearance": [self.field.color]}

    def l1_term(self) -> Tensor:
        return self.field.density.abs().mean()

    def surface_points(self) -> Tensor:
        """float32 [P, 3] the grid's nodes whose opacity over one sampling step exceeds
        ``surface_threshold``: the coarse geometry."""
        with torch.no_grad():
            points = self.field.nodes()
            alpha = 1 - torch.exp(-self.field.sigma(points) * self.sample_step())
        return points[alpha > self.config.surface_threshold]

    def export(self, run_dir: Path) -> None:
        """Writes the coarse geometry (:meth:`surface_points`) as ``points.pt``."""
        save_torch_atomic(Path(run_dir) / SURFACE_POINTS, self.surface_points().cpu())


@dataclass
class DensityGridMethodConfig(RadianceFieldConfig):
    _target = DensityGrid
    model: DensityGridConfig = field(default_factory=DensityGridConfig)
    """The grid."""
    surface_threshold: float = field(default=1e-2, metadata=between(0, 1))
    """Opacity per sampling step above which a grid node counts as surface."""
