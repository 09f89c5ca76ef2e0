"""tensorf: TensoRF's vector-matrix radiance field (Chen et al. 2022,
https://arxiv.org/abs/2203.09517), the dense baseline that ``strivec`` is measured
against: the same renderer, sampling, alpha mask, losses and schedule, with dense planes
and lines over the scene box (shrunk to the alpha mask's bounds when the first mask is
built, as TensoRF does) instead of local tensors on the surface."""

from dataclasses import dataclass, field
from importlib import resources

import torch

from sparse3d.core.grid import VoxelGrid
from sparse3d.engine.distributed import World
from sparse3d.engine.registry import MethodSpecification
from sparse3d.fields.occupancy import full_occupancy
from sparse3d.fields.tensorf import TensorVMConfig, TensorVMField, voxel_schedule
from sparse3d.methods.radiance_field import (
    RadianceFieldConfig,
    RadianceFieldMethod,
    swap_parameters,
)

INIT_KEY = 104729  # separates the initial values from the step seeds


@dataclass
class TensoRFModelConfig:
    """The VM field and its growth."""

    vm: TensorVMConfig = field(default_factory=TensorVMConfig)
    """Resolution, components and shader."""
    upsample_steps: tuple[int, ...] = (2000, 3000, 4000, 5500, 7000)
    """Steps after which the planes and lines grow towards vm.final_voxels."""


class TensoRF(RadianceFieldMethod):
    """TensoRF-VM over the scene box."""

    config: "TensoRFConfig"

    def __init__(self, config: "TensoRFConfig", world: World, device: torch.device) -> None:
        super().__init__(config, world, device)
        generator = torch.Generator().manual_seed(config.trainer.seed + INIT_KEY)
        self.field = TensorVMField(config.model.vm, self.box_lower, self.box_upper, generator).to(device)
        grid = VoxelGrid.covering(self.box_lower, self.box_upper, config.render.occupancy_voxel)
        self.occupancy = full_occupancy(grid, device)

    def sample_step(self) -> float:
        """``render.step_ratio`` of the mean cell of the planes' current resolution."""
        reso = torch.tensor(self.field.resolution, dtype=torch.float32, device=self.field.lower.device)
        return self.config.render.step_ratio * float(((self.field.upper - self.field.lower) / (reso - 1)).mean())

    def fit_to_mask(self, step: int, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        """After the first alpha mask, crops the planes and lines to the mask's bounds
        (TensoRF's shrink), so that the voxels of later upsamplings go to the object."""
        if step != min(self.config.render.alpha_mask_steps) or len(self.occupancy.keys) == 0:
            return
        old = self.field.density_vectors() + self.field.app_vectors()
        self.field.shrink(*self.occupancy.bounds())
        swap_parameters(optimizers, {o: (n, None) for o, n in zip(old, self.field.density_vectors() + self.field.app_vectors())})

    def grow(self, step: int, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        """Upsamples the planes and lines at the steps of ``model.upsample_steps``."""
        m = self.config.model
        if step not in m.upsample_steps:
            return
        voxels = voxel_schedule(m.vm.voxels, m.vm.final_voxels, len(m.upsample_steps))[sorted(m.upsample_steps).index(step)]
        old = self.field.density_vectors() + self.field.app_vectors()
        self.field.upsample(voxels)
        swap_parameters(optimizers, {o: (n, None) for o, n in zip(old, self.field.density_vectors() + self.field.app_vectors())})


@dataclass
class TensoRFConfig(RadianceFieldConfig):
    _target = TensoRF
    model: TensoRFModelConfig = field(default_factory=TensoRFModelConfig)
    """The VM field and upsampling."""


spec = MethodSpecification(
    config_type=TensoRFConfig,
    description="TensoRF-VM: dense vector-matrix radiance field, the baseline of strivec.",
    defaults=resources.files("sparse3d.configs") / "tensorf.yaml",
)
