"""strivec: sparse tri-vector radiance fields (Gao et al. 2023, https://arxiv.org/abs/2307.13226).

``sparse3d-train method=strivec data=PATH`` first trains a dense low-resolution density
grid (``RUN/coarse``, DVGO's coarse stage) and keeps its visible nodes as the coarse
geometry (or takes the points of ``model.points_file``); the local tensors of every level
go on the voxels that hold those points (sparse3d.fields.strivec). Training then follows
Strivec's schedule: rays sampled only inside the tensors' boxes, the alpha mask rebuilt
at ``render.alpha_mask_steps``, the vectors upsampled at ``model.upsample_steps``, L1
on the density vectors, and a learning rate that decays tenfold. After each alpha mask
the tensors whose cube meets no cell left to sample are dropped (the coarse grid places
tensors inside solid objects too; no ray reaches them once the surface is opaque).
"""

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from sparse3d.core.grid import VoxelGrid
from sparse3d.engine.config import at_least, between
from sparse3d.engine.distributed import World
from sparse3d.engine.registry import MethodSpecification
from sparse3d.engine.scene import Boxes3D, SceneLayer
from sparse3d.engine.trainer import train_stage
from sparse3d.fields.occupancy import Occupancy, box_occupancy, cubes_meeting
from sparse3d.fields.strivec import (
    StrivecField,
    StrivecFieldConfig,
    dims_schedule,
    upsampled_vectors,
)
from sparse3d.fields.tensorf import DensityGridConfig
from sparse3d.methods.density_grid import SURFACE_POINTS, DensityGridMethodConfig
from sparse3d.methods.radiance_field import (
    RadianceFieldConfig,
    RadianceFieldMethod,
    swap_parameters,
)
from sparse3d.render.ply import read_points_ply, write_boxes_ply

INIT_KEY = 104729  # separates the tensors' initial values from the step seeds


@dataclass
class CoarseConfig:
    """The coarse density grid that places the tensors."""

    steps: int = field(default=300, metadata=at_least(1))
    """Training steps of the grid."""
    voxels: int = field(default=64**3, metadata=at_least(8))
    """Voxels of the grid."""
    density_shift: float = -6.0
    """The grid's density shift: higher than the fields' -10, so that space starts
    faintly opaque and both the surface and the empty space emerge within few steps."""
    surface_threshold: float = field(default=1e-2, metadata=between(0, 1))
    """Opacity per sampling step above which a grid node counts as surface."""


@dataclass
class StrivecModelConfig:
    """The local tensors, their placement and their growth."""

    tensors: StrivecFieldConfig = field(default_factory=StrivecFieldConfig)
    """Levels, components, vector lengths and shader."""
    points_file: Path | None = None
    """A PLY of points (the coarse geometry) to place the tensors on instead of training
    the coarse grid (e.g. a visual hull or an MVS point cloud)."""
    coarse: CoarseConfig = field(default_factory=CoarseConfig)
    """The coarse grid, when no points_file is given."""
    upsample_steps: tuple[int, ...] = (2000, 3000, 4000, 5500, 7000)
    """Steps after which every level's vectors grow towards tensors.final_dims."""


class Strivec(RadianceFieldMethod):
    """Local tri-vector tensors on the coarse geometry's voxels."""

    config: "StrivecConfig"

    @classmethod
    def prepare(cls, config: "StrivecConfig", world: World) -> None:
        """Trains (or resumes, or finds) the coarse density grid in ``RUN/coarse``."""
        if config.model.points_file is None:
            train_stage(coarse_config(config), Path(config.output) / "coarse", world, name="strivec-coarse")

    def __init__(self, config: "StrivecConfig", world: World, device: torch.device) -> None:
        super().__init__(config, world, device)
        generator = torch.Generator().manual_seed(config.trainer.seed + INIT_KEY)
        self.field = StrivecField(config.model.tensors, self.box_lower, self.box_upper, self.coarse_points(), generator).to(device)
        self.occupancy = self.box_occupancy()

    def coarse_points(self) -> torch.Tensor:
        """float32 [P, 3] the coarse geometry: the points file's, or the coarse grid's."""
        m = self.config.model
        if m.points_file is not None:
            return read_points_ply(m.points_file)[0].float()
        return torch.load(Path(self.config.output) / "coarse" / SURFACE_POINTS, weights_only=True)

    def box_occupancy(self) -> Occupancy:
        """The cells of the occupancy grid that meet a tensor's box, any level."""
        grid = VoxelGrid.covering(self.box_lower, self.box_upper, self.config.render.occupancy_voxel)
        keys = torch.cat([box_occupancy(grid, level.centers, level.half_size).keys for level in self.field.levels])
        return Occupancy(grid, keys.unique())

    def sample_step(self) -> float:
        """``render.step_ratio`` of the finest spacing of level 0's vector values."""
        level = self.field.levels[0]
        return self.config.render.step_ratio * 2 * level.half_size / (level.density.shape[-1] - 1)

    def grow(self, step: int, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        """Upsamples every level's vectors at the steps of ``model.upsample_steps``."""
        m = self.config.model
        if step not in m.upsample_steps:
            return
        k = sorted(m.upsample_steps).index(step)
        replaced = {}
        for level, start, final in zip(self.field.levels, m.tensors.dims, m.tensors.final_dims):
            dim = dims_schedule(start, final, len(m.upsample_steps))[k]
            for name in ("density", "appearance"):
                old = getattr(level, name)
                new = nn.Parameter(upsampled_vectors(old.detach(), dim))
                setattr(level, name, new)
                replaced[old] = (new, None)
        swap_parameters(optimizers, replaced)

    def fit_to_mask(self, step: int, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        """After each alpha mask, drops the tensors whose cube meets no cell left to sample
        (inside a solid object, or round space that emptied): no sample reaches them again,
        so every render stays the same with fewer parameters."""
        kept = {}
        for level in self.field.levels:
            rows = cubes_meeting(self.occupancy, level.centers, level.half_size)
            if bool(rows.all()):
                continue
            old = (level.density, level.appearance)
            level.keep_tensors(rows)
            kept.update({o: (n, rows) for o, n in zip(old, (level.density, level.appearance))})
        swap_parameters(optimizers, kept)

    def export(self, run_dir: Path) -> None:
        """Writes each level's local tensors as boxes, ``tensors_level_<l>.ply``."""
        for i, level in enumerate(self.field.levels):
            write_boxes_ply(Path(run_dir) / f"tensors_level_{i}.ply", *level.boxes())

    def summary(self, run_dir: Path) -> list[str]:
        counts = ", ".join(str(level.num_tensors) for level in self.field.levels)
        return [f"local tensors per level: {counts} ({self.field.num_parameters():,} parameters), boxes in "
                f"{Path(run_dir) / 'tensors_level_*.ply'}; mesh the density with `sparse3d-export density run={run_dir}`"]

    def get_scene_layers(self) -> list[SceneLayer]:
        """The local tensors' boxes of each level, and the training cameras."""
        layers = []
        for i, level in enumerate(self.field.levels):
            lower, upper = level.boxes()
            centers = ((lower + upper) / 2).cpu()
            sizes = (upper - lower).cpu()
            boxes = torch.cat([centers, sizes, torch.zeros(len(centers), 1)], 1)
            layers.append(Boxes3D(boxes, name=f"level {i} tensors ({len(centers)})", visible=i == 0))
        return layers + super().get_scene_layers()


def coarse_config(config: "StrivecConfig") -> DensityGridMethodConfig:
    """The coarse grid's run: the same data, box and sampling, its own schedule; its
    held-out score, a diagnostic, renders one ray per pixel (S x S rays took as long as
    its training)."""
    c = config.model.coarse
    trainer = dataclasses.replace(config.trainer, max_steps=c.steps, eval_every=c.steps, ckpt_every=c.steps)
    render = dataclasses.replace(config.render, alpha_mask_steps=(), lr=0.1, l1_weight_initial=0.0, l1_weight_rest=0.0,
                                 eval_supersampling=1)
    return DensityGridMethodConfig(
        data=config.data, trainer=trainer, render=render, datamanager=config.datamanager,
        model=DensityGridConfig(voxels=c.voxels, density_shift=c.density_shift), surface_threshold=c.surface_threshold,
    )


@dataclass
class StrivecConfig(RadianceFieldConfig):
    _target = Strivec
    model: StrivecModelConfig = field(default_factory=StrivecModelConfig)
    """Local tensors, placement and upsampling."""


spec = MethodSpecification(
    config_type=StrivecConfig,
    description="Strivec: sparse local tri-vector tensors on the coarse geometry (sparse-voxel radiance field).",
    defaults=resources.files("sparse3d.configs") / "strivec.yaml",
)
