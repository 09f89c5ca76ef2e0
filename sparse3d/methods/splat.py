"""splat: vanilla 3D Gaussian splatting (Kerbl et al. 2023, https://arxiv.org/abs/2308.04079).

Gaussians start from the data set's points or at random in the cameras' view volume, are
fitted with L1 + D-SSIM against the training images, and are densified with the default
3DGS strategy. It is the baseline that the sparse-view methods are measured against.
"""

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparse3d.data.loader import DataFormat, load_multiview
from sparse3d.engine.config import (
    MethodConfig,
    at_least,
    between,
    check_ranges,
    positive,
)
from sparse3d.engine.distributed import World
from sparse3d.engine.method import Method, StepOutputs, TrainingCallback
from sparse3d.engine.registry import MethodSpecification
from sparse3d.engine.scene import CameraFrusta, SceneLayer, Splats
from sparse3d.engine.seeding import derive_seed, step_generator
from sparse3d.geometry.cameras import Cameras
from sparse3d.render.gaussians.init import initial_gaussians, random_points, scene_scale
from sparse3d.render.gaussians.projection import quat_scale_to_covar
from sparse3d.render.gaussians.sh import sh_to_color
from sparse3d.render.metrics import find_lpips_weights, image_metrics, ssim
from sparse3d.render.ply import write_gaussians_ply
from sparse3d.render.rasterize import RasterConfig, RasterMeta, rasterize_gaussians
from sparse3d.render.strategy.default import DefaultStrategy

INIT_KEY = 104729  # separate the initialisation and densification seeds from the step seeds
DENSIFY_KEY = 1299709


@dataclass
class SplatModelConfig:
    """The Gaussians and their optimisation."""

    init: Literal["points", "random"] = "random"
    """Start from the data set's points, or from random points in the view volume."""
    num_random: int = field(default=10000, metadata=at_least(1))
    """Number of random initial Gaussians."""
    init_extent: float = field(default=1.0, metadata=positive())
    """Random points fill a cube of this half-size times the scene scale."""
    init_opacity: float = field(default=0.1, metadata=between(0, 1, closed=False))
    """Initial opacity of every Gaussian, in (0, 1)."""
    sh_degree: int = field(default=3, metadata=between(0, 3))
    """Highest spherical-harmonics degree of the colours (0 to 3)."""
    sh_degree_interval: int = field(default=1000, metadata=at_least(1))
    """Raise the active SH degree by one every this many steps."""
    ssim_lambda: float = field(default=0.2, metadata=between(0, 1))
    """Weight of the D-SSIM term; L1 gets 1 - ssim_lambda."""
    means_lr: float = field(default=1.6e-4, metadata=positive())
    """Learning rate of the centres, times the scene scale."""
    scales_lr: float = field(default=5e-3, metadata=positive())
    """Learning rate of the log-scales."""
    quats_lr: float = field(default=1e-3, metadata=positive())
    """Learning rate of the rotations."""
    opacities_lr: float = field(default=5e-2, metadata=positive())
    """Learning rate of the opacity logits."""
    sh0_lr: float = field(default=2.5e-3, metadata=positive())
    """Learning rate of the degree-0 SH coefficients."""
    shN_lr: float = field(default=2.5e-3 / 20, metadata=positive())
    """Learning rate of the higher SH coefficients."""
    raster: RasterConfig = field(default_factory=RasterConfig)
    """Rasterizer options."""
    strategy: DefaultStrategy = field(default_factory=DefaultStrategy)
    """Densification: clone, split, prune and opacity reset."""

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass
class SplatDataConfig:
    """Which images train and which evaluate."""

    format: DataFormat = "auto"
    """Data format of the data directory: auto (detect it), nerfstudio (transforms.json),
    blender (transforms_train.json), colmap (sparse/0: the binary model if present, else
    text), colmap-bin or colmap-txt (that COLMAP encoding only)."""
    num_train_views: int | None = field(default=None, metadata=at_least(1))
    """Train on the data's sparse_<k>.txt split (4, 6 or 9 views) and evaluate on
    sparse_test.txt; None keeps the format's own train/test split."""

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True)
class SplatOutputs:
    """The forward pass of one training step."""

    rgb: Tensor
    """float [C, H, W, 3] renders over white, in [0, 1] up to overshoot."""
    meta: RasterMeta
    """The rasterizer's meta; ``means2d`` retains its gradient for densification."""


class Splat(Method):
    """3D Gaussian splatting on the training views of a multi-view data set."""

    config: "SplatConfig"

    def __init__(self, config: "SplatConfig", world: World, device: torch.device) -> None:
        super().__init__(config, world, device)
        if config.data is None:
            raise ValueError("splat needs data=PATH (e.g. a folder written by `sparse3d-data objects`)")
        self.data = load_multiview(config.data, config.datamanager.format, config.datamanager.num_train_views)
        if len(self.data.train_indices) == 0:
            raise ValueError(f"{self.data.source}: the split has no training views")
        self.cameras = self.data.cameras.to(device)
        self.images = self.data.images.to(device)  # uint8 [N, H, W, 3], converted per batch
        self.scene_scale = scene_scale(self.data.cameras)
        self.splats = nn.ParameterDict(
            {k: nn.Parameter(v) for k, v in self._initial_gaussians(config.trainer.seed).items()}
        )
        self.splats.to(device)
        self.strategy_state = config.model.strategy.initialize_state(self.scene_scale)
        self.sh_degree = 0  # the SH degree rendered now, set by update_to_step

    def _initial_gaussians(self, seed: int) -> dict[str, Tensor]:
        """Gaussians on the data set's points, or on random points in the view volume."""
        m = self.config.model
        g = torch.Generator().manual_seed(derive_seed(seed, INIT_KEY))
        if m.init == "points":
            data = self.data
            if data.points is None or len(data.points) == 0:
                raise ValueError(f"{data.source}: model.init=points, but the data set has no points; use model.init=random")
            points = data.points.float()
            rgbs = data.point_colors.float() / 255.0 if data.point_colors is not None else torch.full_like(points, 0.5)
        else:
            points, rgbs = random_points(m.num_random, m.init_extent * self.scene_scale, g)
        return initial_gaussians(points, rgbs, m.sh_degree, m.init_opacity, g)

    def get_param_groups(self) -> list[dict[str, Any]]:
        m = self.config.model
        lrs = {
            "means": m.means_lr * self.scene_scale,
            "scales": m.scales_lr,
            "quats": m.quats_lr,
            "opacities": m.opacities_lr,
            "sh0": m.sh0_lr,
            "shN": m.shN_lr,
        }
        return [{"name": name, "params": [self.splats[name]], "lr": lr, "eps": 1e-15} for name, lr in lrs.items()]

    def update_to_step(self, step: int) -> None:
        """Raises the SH degree one band every ``sh_degree_interval`` steps."""
        self.sh_degree = min(step // self.config.model.sh_degree_interval, self.config.model.sh_degree)

    def get_train_batch(self, step: int) -> Tensor:
        """int64 [1] index of this step's training view."""
        train = self.data.train_indices
        pick = torch.randint(len(train), (1,), generator=step_generator(self.config.trainer.seed, step))
        return train[pick]

    def get_outputs(self, batch: Tensor, step: int) -> SplatOutputs:
        """Renders the training view(s) ``batch`` (int64 [C] indices)."""
        rgb, _, meta = self._rasterize(self.cameras[batch], self.config.model.raster)
        if meta.means2d.requires_grad:  # densification reads the image-plane gradient
            meta.means2d.retain_grad()
        return SplatOutputs(rgb, meta)

    def get_loss_dict(self, outputs: SplatOutputs, batch: Tensor, step: int) -> dict[str, Tensor]:
        """(1 - lambda) L1 + lambda D-SSIM against the training images."""
        target = self.images[batch].float() / 255.0
        lam = self.config.model.ssim_lambda
        return {
            "l1": (1.0 - lam) * F.l1_loss(outputs.rgb, target),
            "dssim": lam * (1.0 - ssim(outputs.rgb, target).mean()),
        }

    def get_training_callbacks(self) -> list[TrainingCallback]:
        return [TrainingCallback("after_step", self._densify)]

    def _densify(self, step: int, optimizers: dict[str, torch.optim.Optimizer], produced: StepOutputs | None) -> None:
        # Splitting samples from the global RNG: seed it from the step, so that a resumed
        # run samples what an uninterrupted one would have.
        cuda_devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(derive_seed(self.config.trainer.seed, step, DENSIFY_KEY))
            self.config.model.strategy.step_post_backward(
                self.splats, optimizers, self.strategy_state, step, produced.outputs.meta
            )

    def get_outputs_for_camera(self, camera: Cameras) -> dict[str, Tensor]:
        """Renders the Gaussians from one camera over white, at the current SH degree.

        Args:
            camera: a batch of one camera, any image size W x H.

        Returns:
            "rgb" float [H, W, 3] in [0, 1] up to overshoot, "alpha" float [H, W, 1], and
            "depth" float [H, W, 1] expected camera-frame z (0 where alpha is 0).
        """
        if len(camera) != 1:
            raise ValueError(f"get_outputs_for_camera: expected one camera, got {len(camera)}")
        # The colour channels are composited exactly as with "RGB" alone; depth rides along.
        raster = dataclasses.replace(self.config.model.raster, render_mode="RGB+ED")
        render, alpha, _ = self._rasterize(camera.to(self.device), raster)
        return {"rgb": render[0, ..., :3], "alpha": alpha[0], "depth": render[0, ..., 3:]}

    def _rasterize(self, cameras: Cameras, raster: RasterConfig) -> tuple[Tensor, Tensor, RasterMeta]:
        """Renders the Gaussians into ``cameras`` over a white background.

        Returns:
            float [C, H, W, D] render (RGB first), float [C, H, W, 1] alphas, and the meta.
        """
        s = self.splats
        colors = torch.cat([s["sh0"], s["shN"]], dim=1)
        white = torch.ones(len(cameras), 3, device=self.device)
        return rasterize_gaussians(
            s["means"], s["quats"], torch.exp(s["scales"]), torch.sigmoid(s["opacities"]), colors,
            cameras.viewmats, cameras.Ks, cameras.width, cameras.height, raster,
            sh_degree=self.sh_degree, backgrounds=white,
        )

    def get_eval_metrics(self, step: int) -> dict[str, float]:
        report = self.get_eval_report(step)
        return {k: v for k, v in report.items() if isinstance(v, float)}

    def get_eval_report(self, step: int) -> dict[str, Any]:
        """PSNR / SSIM (plain, and masked on white when the data has masks) and LPIPS (None
        unless its weights exist locally) per held-out view, and their means; each view is
        rendered by ``get_outputs_for_camera``."""
        lpips_weights = find_lpips_weights()
        views = []
        for index in self.data.test_indices.tolist():
            render = self.get_outputs_for_camera(self.cameras[index])["rgb"][None].clamp(0, 1)  # [1, H, W, 3]
            target = self.images[index : index + 1].float() / 255.0
            view = {"name": self.data.image_names[index], **image_metrics(render, target, None, lpips_weights).mean()}
            if self.data.masks is not None:
                mask = self.data.masks[index : index + 1].to(self.device)
                masked = image_metrics(render, target, mask, lpips_weights).mean()
                view |= {f"masked_{k}": v for k, v in masked.items()}
            views.append(view)
        keys = [k for k in views[0] if k != "name"] if views else []
        means = {k: None if views[0][k] is None else sum(v[k] for v in views) / len(views) for k in keys}
        return {**means, "num_gaussians": float(len(self.splats["means"])), "views": views}

    def get_scene_layers(self) -> list[SceneLayer]:
        """The Gaussians (degree-0 colours) and the training cameras with their images."""
        s = {k: v.detach() for k, v in self.splats.items()}
        train = self.data.train_indices
        # At degree 0 the colour does not depend on the view direction: any direction does.
        rgbs = sh_to_color(0, s["means"], s["sh0"]).clamp(max=1.0)
        return [
            Splats(
                means=s["means"],
                covariances=quat_scale_to_covar(s["quats"], torch.exp(s["scales"])),
                rgbs=rgbs,
                opacities=torch.sigmoid(s["opacities"]),
            ),
            CameraFrusta(self.data.cameras[train], self.data.images[train], name="training views"),
        ]

    def get_extra_state(self) -> dict[str, Any]:
        # The densification statistics accumulate between refinements: a resumed run
        # needs them to refine exactly as an uninterrupted one.
        return dataclasses.asdict(self.strategy_state)

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.strategy_state = type(self.strategy_state)(**state)

    def load_state_dict(self, state_dict, strict: bool = True):
        # Densification changes the number of Gaussians: take the checkpoint's shapes.
        for name in list(self.splats.keys()):
            self.splats[name] = nn.Parameter(torch.empty_like(state_dict[f"splats.{name}"], device=self.device))
        return super().load_state_dict(state_dict, strict)

    def export(self, run_dir: Path) -> None:
        """Writes the Gaussians as a standard 3DGS PLY (point_cloud.ply)."""
        s = {k: v.detach().cpu() for k, v in self.splats.items()}
        write_gaussians_ply(Path(run_dir) / "point_cloud.ply", s["means"], s["scales"], s["quats"], s["opacities"], s["sh0"], s["shN"])


@dataclass
class SplatConfig(MethodConfig):
    _target = Splat
    model: SplatModelConfig = field(default_factory=SplatModelConfig)
    """Gaussians, losses and densification."""
    datamanager: SplatDataConfig = field(default_factory=SplatDataConfig)
    """Training and held-out views."""


spec = MethodSpecification(
    config_type=SplatConfig,
    description="Vanilla 3D Gaussian splatting (L1 + D-SSIM, default densification): the baseline.",
    defaults=resources.files("sparse3d.configs") / "splat.yaml",
)
