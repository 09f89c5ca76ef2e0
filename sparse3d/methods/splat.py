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

from sparse3d.data.dataset import MultiViewDataset
from sparse3d.data.loader import load_multiview
from sparse3d.engine.config import MethodConfig
from sparse3d.engine.distributed import World
from sparse3d.engine.method import Method, TrainingCallback, ViewerContent
from sparse3d.engine.registry import MethodSpecification
from sparse3d.engine.seeding import derive_seed, step_generator
from sparse3d.geometry.cameras import Cameras
from sparse3d.render.metrics import find_lpips_weights, image_metrics, ssim
from sparse3d.render.ply import write_gaussians_ply
from sparse3d.render.gaussians.projection import quat_scale_to_covar
from sparse3d.render.rasterize import RasterConfig, rasterize_gaussians
from sparse3d.render.strategy.default import DefaultStrategy

SH_C0 = 0.28209479177387814  # the degree-0 SH basis constant: colour = SH_C0 * dc + 0.5
INIT_KEY = 104729  # separate the initialisation and densification seeds from the step seeds
DENSIFY_KEY = 1299709


@dataclass
class SplatModelConfig:
    """The Gaussians and their optimisation."""

    init: Literal["points", "random"] = "random"
    """Start from the data set's points, or from random points in the view volume."""
    num_random: int = 10000
    """Number of random initial Gaussians."""
    init_extent: float = 1.0
    """Random points fill a cube of this half-size times the scene scale."""
    init_opacity: float = 0.1
    """Initial opacity of every Gaussian."""
    sh_degree: int = 3
    """Highest spherical-harmonics degree of the colours."""
    sh_degree_interval: int = 1000
    """Raise the active SH degree by one every this many steps."""
    ssim_lambda: float = 0.2
    """Weight of the D-SSIM term; L1 gets 1 - ssim_lambda."""
    means_lr: float = 1.6e-4
    """Learning rate of the centres, times the scene scale."""
    scales_lr: float = 5e-3
    """Learning rate of the log-scales."""
    quats_lr: float = 1e-3
    """Learning rate of the rotations."""
    opacities_lr: float = 5e-2
    """Learning rate of the opacity logits."""
    sh0_lr: float = 2.5e-3
    """Learning rate of the degree-0 SH coefficients."""
    shN_lr: float = 2.5e-3 / 20
    """Learning rate of the higher SH coefficients."""
    raster: RasterConfig = field(default_factory=RasterConfig)
    """Rasterizer options."""
    strategy: DefaultStrategy = field(default_factory=DefaultStrategy)
    """Densification: clone, split, prune and opacity reset."""


@dataclass
class SplatDataConfig:
    """Which images train and which evaluate."""

    format: Literal["auto", "nerfstudio", "blender", "colmap"] = "auto"
    """Data format of the data directory."""
    num_train_views: int | None = None
    """Train on the data's sparse_<k>.txt split (4, 6 or 9 views) and evaluate on
    sparse_test.txt; None keeps the format's own train/test split."""


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
        self.splats = nn.ParameterDict(initial_gaussians(self.data, config.model, self.scene_scale, config.trainer.seed))
        self.splats.to(device)
        self.strategy_state = config.model.strategy.initialize_state(self.scene_scale)
        self._last_meta = None

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

    def get_train_batch(self, step: int) -> Tensor:
        """int64 [1] index of this step's training view."""
        train = self.data.train_indices
        pick = torch.randint(len(train), (1,), generator=step_generator(self.config.trainer.seed, step))
        return train[pick]

    def get_loss_dict(self, batch: Tensor, step: int) -> dict[str, Tensor]:
        render, meta = self.render(self.cameras[batch], self.active_sh_degree(step))
        meta.means2d.retain_grad()  # densification reads the image-plane gradient
        self._last_meta = meta
        target = self.images[batch].float() / 255.0
        lam = self.config.model.ssim_lambda
        return {
            "l1": (1.0 - lam) * F.l1_loss(render, target),
            "dssim": lam * (1.0 - ssim(render, target).mean()),
        }

    def get_training_callbacks(self) -> list[TrainingCallback]:
        return [TrainingCallback("after_step", self._densify)]

    def _densify(self, step: int, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        # Splitting samples from the global RNG: seed it from the step, so that a resumed
        # run samples what an uninterrupted one would have.
        cuda_devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(derive_seed(self.config.trainer.seed, step, DENSIFY_KEY))
            self.config.model.strategy.step_post_backward(self.splats, optimizers, self.strategy_state, step, self._last_meta)

    def render(self, cameras: Cameras, sh_degree: int) -> tuple[Tensor, Any]:
        """Renders the Gaussians over a white background.

        Returns:
            float [C, H, W, 3] RGB in [0, 1] (up to overshoot), and the rasterizer meta.
        """
        s = self.splats
        colors = torch.cat([s["sh0"], s["shN"]], dim=1)
        white = torch.ones(len(cameras), 3, device=self.device)
        render, _, meta = rasterize_gaussians(
            s["means"], s["quats"], torch.exp(s["scales"]), torch.sigmoid(s["opacities"]), colors,
            cameras.viewmats, cameras.Ks, cameras.width, cameras.height, self.config.model.raster,
            sh_degree=sh_degree, backgrounds=white,
        )
        return render, meta

    def active_sh_degree(self, step: int) -> int:
        """The SH degree in use at ``step`` (raised one band every sh_degree_interval steps)."""
        return min(step // self.config.model.sh_degree_interval, self.config.model.sh_degree)

    def get_eval_metrics(self, step: int) -> dict[str, float]:
        report = self.get_eval_report(step)
        return {k: v for k, v in report.items() if isinstance(v, float)}

    def get_eval_report(self, step: int) -> dict[str, Any]:
        """PSNR / SSIM (plain, and masked on white when the data has masks) and LPIPS (None
        unless its weights exist locally) per held-out view, and their means."""
        lpips_weights = find_lpips_weights()
        views = []
        for index in self.data.test_indices.tolist():
            render, _ = self.render(self.cameras[index], self.active_sh_degree(step))
            target = self.images[index : index + 1].float() / 255.0
            view = {"name": self.data.image_names[index], **image_metrics(render.clamp(0, 1), target, None, lpips_weights).mean()}
            if self.data.masks is not None:
                mask = self.data.masks[index : index + 1].to(self.device)
                masked = image_metrics(render.clamp(0, 1), target, mask, lpips_weights).mean()
                view |= {f"masked_{k}": v for k, v in masked.items()}
            views.append(view)
        keys = [k for k in views[0] if k != "name"] if views else []
        means = {k: None if views[0][k] is None else sum(v[k] for v in views) / len(views) for k in keys}
        return {**means, "num_gaussians": float(len(self.splats["means"])), "views": views}

    def get_viewer_content(self) -> ViewerContent:
        s = self.splats
        train = self.data.train_indices
        return ViewerContent(
            splat_centers=s["means"],
            splat_covariances=quat_scale_to_covar(s["quats"], torch.exp(s["scales"])),
            splat_rgbs=(s["sh0"][:, 0] * SH_C0 + 0.5).clamp(0, 1),
            splat_opacities=torch.sigmoid(s["opacities"]),
            camera_viewmats=self.data.cameras.viewmats[train],
            camera_Ks=self.data.cameras.Ks[train],
            camera_images=self.data.images[train],
        )

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


def scene_scale(cameras: Cameras) -> float:
    """1.1 x the largest distance of a camera centre from their mean (the 3DGS convention)."""
    centers = cameras.centers
    return 1.1 * float((centers - centers.mean(0)).norm(dim=1).max())


def initial_gaussians(data: MultiViewDataset, model: SplatModelConfig, scale: float, seed: int) -> dict[str, nn.Parameter]:
    """Initial Gaussian parameters (centres, log-scales, quaternions, opacity logits, SH)."""
    g = torch.Generator().manual_seed(derive_seed(seed, INIT_KEY))
    if model.init == "points":
        if data.points is None or len(data.points) == 0:
            raise ValueError(f"{data.source}: model.init=points, but the data set has no points; use model.init=random")
        points = data.points.float()
        rgb = data.point_colors.float() / 255.0 if data.point_colors is not None else torch.full_like(points, 0.5)
    else:
        points = model.init_extent * scale * (torch.rand(model.num_random, 3, generator=g) * 2 - 1)
        rgb = torch.rand(model.num_random, 3, generator=g)
    n = len(points)
    nearest = mean_neighbour_distance(points, k=3)
    n_sh = (model.sh_degree + 1) ** 2
    params = {
        "means": points,
        "scales": torch.log(nearest.clamp_min(1e-7))[:, None].repeat(1, 3),
        "quats": F.normalize(torch.rand(n, 4, generator=g), dim=-1),
        "opacities": torch.logit(torch.full((n,), model.init_opacity)),
        "sh0": ((rgb - 0.5) / SH_C0)[:, None, :],
        "shN": torch.zeros(n, n_sh - 1, 3),
    }
    return {k: nn.Parameter(v.contiguous()) for k, v in params.items()}


def mean_neighbour_distance(points: Tensor, k: int, chunk: int = 4096) -> Tensor:
    """float [N] mean distance of each point to its k nearest other points (brute force, chunked)."""
    out = []
    for start in range(0, len(points), chunk):
        d = torch.cdist(points[start : start + chunk], points)
        out.append(d.topk(k + 1, largest=False).values[:, 1:].mean(dim=1))
    return torch.cat(out)


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
