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

from sparse3d.core.elementwise import sigmoid
from sparse3d.data.loader import DataFormat, load_multiview
from sparse3d.engine.config import (
    MethodConfig,
    at_least,
    between,
    check_ranges,
    positive,
)
from sparse3d.engine.distributed import World
from sparse3d.engine.method import (
    EvalSource,
    Method,
    StepOutputs,
    TrainingCallback,
    require_own_data,
)
from sparse3d.engine.registry import MethodSpecification
from sparse3d.engine.scene import CameraFrusta, SceneLayer, Splats
from sparse3d.engine.seeding import derive_seed, step_generator
from sparse3d.geometry.cameras import Cameras
from sparse3d.methods.view_eval import heldout_view_report
from sparse3d.reconstruction.floaters import floater_lambda, floater_mask
from sparse3d.render.gaussians.init import initial_gaussians, random_points, scene_scale
from sparse3d.render.gaussians.projection import quat_scale_to_covar
from sparse3d.render.gaussians.sh import sh_to_color
from sparse3d.render.metrics import ssim
from sparse3d.render.ply import read_points_ply, write_gaussians_ply
from sparse3d.render.rasterize import RasterConfig, RasterMeta, rasterize_gaussians
from sparse3d.render.strategy.default import DefaultStrategy, drop_rows
from sparse3d.render.strategy.ops import remove

INIT_KEY = 104729  # separate the initialisation, densification and background seeds from the step seeds
DENSIFY_KEY = 1299709
BACKGROUND_KEY = 15485863


@dataclass
class SplatModelConfig:
    """The Gaussians and their optimisation."""

    init: Literal["points", "random", "file"] = "random"
    """Start from the data set's points, from random points in the view volume, or from the
    points of ``init_file``."""
    init_file: Path | None = None
    """With init=file: a PLY of points (x, y, z and optional red, green, blue), e.g. a
    visual hull."""
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
    silhouette_lambda: float = field(default=0.0, metadata=at_least(0))
    """Weight of the binary cross-entropy between the rendered alpha and the ground-truth
    coverage (GaussianObject: 0.01); needs masks or alphas in the data."""
    random_background: bool = False
    """Render each step over a random colour, the ground truth composited over the same
    colour by its coverage, so that the background cannot be painted with Gaussians;
    needs masks or alphas in the data."""
    floaters: bool = False
    """Floater elimination (GaussianObject): during densification, every
    ``floaters_every`` steps, remove the Gaussians whose neighbours are statistical
    outliers (reconstruction.floaters)."""
    floaters_every: int = field(default=500, metadata=at_least(1))
    """Period of floater elimination, in steps."""
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
    leave_out: int | None = field(default=None, metadata=at_least(0))
    """Leave this training view out (its position in the training split), e.g. for
    GaussianObject's leave-one-out runs; None trains on every training view."""
    leave_out_until: int | None = field(default=None, metadata=at_least(0))
    """With leave_out: the step from which the left-out view trains again; None: never."""

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True)
class SplatOutputs:
    """The forward pass of one training step."""

    rgb: Tensor
    """float [C, H, W, 3] renders over ``background``, in [0, 1] up to overshoot."""
    alpha: Tensor
    """float [C, H, W, 1] accumulated opacity."""
    background: Tensor
    """float [C, 3] the background colour of each render (white unless random)."""
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
        self.coverage = self.data.coverage()  # uint8 [N, H, W] or None
        m, d = config.model, config.datamanager
        if self.coverage is None and (m.silhouette_lambda > 0 or m.random_background):
            raise ValueError(
                f"{self.data.source}: model.silhouette_lambda and model.random_background need object masks "
                "(masks/ or images with alpha); the data has none"
            )
        if d.leave_out is not None and d.leave_out >= len(self.data.train_indices):
            raise ValueError(
                f"datamanager.leave_out={d.leave_out}: the split has only {len(self.data.train_indices)} training views"
            )
        self.cameras = self.data.cameras.to(device)
        self.images = self.data.images.to(device)  # uint8 [N, H, W, 3], converted per batch
        self.scene_scale = scene_scale(self.data.cameras)
        self.splats = nn.ParameterDict(
            {k: nn.Parameter(v) for k, v in self._initial_gaussians(config.trainer.seed).items()}
        )
        self.splats.to(device)
        self.strategy_state = self.densification().initialize_state(self.scene_scale)
        self.sh_degree = 0  # the SH degree rendered now, set by update_to_step

    def _initial_gaussians(self, seed: int) -> dict[str, Tensor]:
        """Gaussians on the data set's points, or on random points in the view volume."""
        m = self.config.model
        g = torch.Generator().manual_seed(derive_seed(seed, INIT_KEY))
        if m.init == "file":
            if m.init_file is None:
                raise ValueError("model.init=file needs model.init_file=PATH (a PLY of points)")
            points, colors = read_points_ply(m.init_file)
            rgbs = colors.float() / 255.0 if colors is not None else torch.full_like(points, 0.5)
        elif m.init == "points":
            data = self.data
            if data.points is None or len(data.points) == 0:
                raise ValueError(f"{data.source}: model.init=points, but the data set has no points; use model.init=random")
            points = data.points.float()
            rgbs = data.point_colors.float() / 255.0 if data.point_colors is not None else torch.full_like(points, 0.5)
        else:
            points, rgbs = random_points(m.num_random, m.init_extent * self.scene_scale, g)
        return initial_gaussians(points, rgbs, m.sh_degree, m.init_opacity, g)

    def densification(self) -> DefaultStrategy:
        """The densification strategy of this method's training."""
        return self.config.model.strategy

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

    def train_views(self, step: int) -> Tensor:
        """int64 [T] the views that train at ``step`` (all but a left-out one)."""
        train, d = self.data.train_indices, self.config.datamanager
        if d.leave_out is None or (d.leave_out_until is not None and step >= d.leave_out_until):
            return train
        return torch.cat([train[: d.leave_out], train[d.leave_out + 1 :]])

    def get_train_batch(self, step: int) -> Tensor:
        """int64 [1] index of this step's training view."""
        train = self.train_views(step)
        pick = torch.randint(len(train), (1,), generator=step_generator(self.config.trainer.seed, step))
        return train[pick]

    def get_outputs(self, batch: Tensor, step: int) -> SplatOutputs:
        """Renders the training view(s) ``batch`` (int64 [C] indices) over white, or over
        a random colour per view with ``model.random_background``."""
        backgrounds = self.step_backgrounds(len(batch), step)
        rgb, alpha, meta = render_splats(self.splats, self.cameras[batch], self.config.model.raster, self.sh_degree, backgrounds)
        if meta.means2d.requires_grad:  # densification reads the image-plane gradient
            meta.means2d.retain_grad()
        return SplatOutputs(rgb, alpha, backgrounds, meta)

    def step_backgrounds(self, count: int, step: int) -> Tensor:
        """float [count, 3] the backgrounds of step ``step``'s training renders: white, or
        random colours (a function of the step) with ``model.random_background``."""
        if not self.config.model.random_background:
            return torch.ones(count, 3, device=self.device)
        g = torch.Generator().manual_seed(derive_seed(self.config.trainer.seed, step, BACKGROUND_KEY))
        return torch.rand(count, 3, generator=g).to(self.device)

    def get_loss_dict(self, outputs: SplatOutputs, batch: Tensor, step: int) -> dict[str, Tensor]:
        """(1 - lambda) L1 + lambda D-SSIM against the training images (over the render's
        background), plus the silhouette BCE when ``model.silhouette_lambda`` > 0."""
        return self.reference_losses(outputs, batch)

    def reference_losses(self, outputs: SplatOutputs, batch: Tensor) -> dict[str, Tensor]:
        """The losses of renders ``outputs`` of the training views ``batch`` against their images."""
        m = self.config.model
        target = self.images[batch].float() / 255.0
        coverage = None if self.coverage is None else self.coverage[batch].float()[..., None] / 255.0
        if m.random_background:  # the images are over white: swap white for the render's colour
            target = target + (1.0 - coverage) * (outputs.background[:, None, None, :] - 1.0)
        losses = {
            "l1": (1.0 - m.ssim_lambda) * F.l1_loss(outputs.rgb, target),
            "dssim": m.ssim_lambda * (1.0 - ssim(outputs.rgb, target).mean()),
        }
        if m.silhouette_lambda > 0:
            alpha = outputs.alpha.clamp(1e-6, 1.0 - 1e-6)
            losses["silhouette"] = m.silhouette_lambda * F.binary_cross_entropy(alpha, coverage)
        return losses

    def get_training_callbacks(self) -> list[TrainingCallback]:
        return [TrainingCallback("after_step", self._densify)]

    def _densify(self, step: int, optimizers: dict[str, torch.optim.Optimizer], produced: StepOutputs | None) -> None:
        # Splitting samples from the global RNG: seed it from the step, so that a resumed
        # run samples what an uninterrupted one would have.
        cuda_devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(derive_seed(self.config.trainer.seed, step, DENSIFY_KEY))
            self.densification().step_post_backward(
                self.splats, optimizers, self.strategy_state, step, produced.outputs.meta
            )
        m, strategy = self.config.model, self.densification()
        if m.floaters and strategy.refine_start_iter <= step < strategy.refine_stop_iter and step % m.floaters_every == 0:
            self.eliminate_floaters(step, optimizers)

    def eliminate_floaters(self, step: int, optimizers: dict[str, torch.optim.Optimizer]) -> int:
        """Removes the floaters (reconstruction.floaters) at the threshold of ``step``;
        returns how many."""
        strategy = self.densification()
        lam = floater_lambda(step, strategy.refine_start_iter, strategy.refine_stop_iter)
        floaters = floater_mask(self.splats["means"].detach(), lam)
        if floaters.any():
            remove(self.splats, optimizers, floaters)
            self.strategy_state = drop_rows(self.strategy_state, ~floaters)
        return int(floaters.sum())

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
        return camera_outputs(self.splats, camera.to(self.device), self.config.model.raster, self.sh_degree)

    def get_eval_metrics(self, step: int) -> dict[str, float]:
        report = self.get_eval_report(step)
        return {k: v for k, v in report.items() if isinstance(v, float)}

    def get_eval_report(self, step: int, source: EvalSource | None = None) -> dict[str, Any]:
        """PSNR / SSIM / LPIPS of each held-out view by the GaussianObject protocol (the
        render over white, unmasked, against the ground truth over white by its mask), the
        same inside the mask when the data has masks, and their means (methods.view_eval).
        Its own held-out views only: a ``source`` raises NotImplementedError."""
        require_own_data(self, source)
        render = lambda camera: self.get_outputs_for_camera(camera)["rgb"]  # noqa: E731
        report = heldout_view_report(render, self.data, self.data.test_indices, self.device)
        return {**report, "num_gaussians": float(len(self.splats["means"]))}

    def get_scene_layers(self) -> list[SceneLayer]:
        """The Gaussians (degree-0 colours) and the training cameras with their images."""
        train = self.data.train_indices
        frusta = CameraFrusta(self.data.cameras[train], self.data.images[train], name="training views")
        return [splats_layer(self.splats), frusta]

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


def render_splats(
    splats: dict[str, Tensor], cameras: Cameras, raster: RasterConfig, sh_degree: int, backgrounds: Tensor
) -> tuple[Tensor, Tensor, RasterMeta]:
    """Renders Gaussians in the 3DGS layout (means, log-scales, quats, opacity logits, sh0,
    shN) into ``cameras`` over ``backgrounds`` (float [C, 3]).

    Returns:
        float [C, H, W, D] render (RGB first), float [C, H, W, 1] alphas, and the meta.
    """
    s = splats
    colors = torch.cat([s["sh0"], s["shN"]], dim=1)
    return rasterize_gaussians(
        s["means"], s["quats"], torch.exp(s["scales"]), sigmoid(s["opacities"]), colors,
        cameras.viewmats, cameras.Ks, cameras.width, cameras.height, raster,
        sh_degree=sh_degree, backgrounds=backgrounds,
    )


def camera_outputs(splats: dict[str, Tensor], camera: Cameras, raster: RasterConfig, sh_degree: int) -> dict[str, Tensor]:
    """What Gaussians in the 3DGS layout look like from one camera, over white.

    Args:
        splats: the Gaussians (means, log-scales, quats, opacity logits, sh0, shN).
        camera: a batch of one camera, any image size W x H, on the Gaussians' device.
        raster: the rasterizer's settings (its render mode is replaced).
        sh_degree: the SH degree to evaluate (at most the Gaussians' own).

    Returns:
        "rgb" float [H, W, 3] in [0, 1] up to overshoot, "alpha" float [H, W, 1], and
        "depth" float [H, W, 1] expected camera-frame z (0 where alpha is 0).
    """
    # The colour channels are composited exactly as with "RGB" alone; depth rides along.
    raster = dataclasses.replace(raster, render_mode="RGB+ED")
    white = torch.ones(1, 3, device=splats["means"].device)
    render, alpha, _ = render_splats(splats, camera, raster, sh_degree, white)
    return {"rgb": render[0, ..., :3], "alpha": alpha[0], "depth": render[0, ..., 3:]}


def splats_layer(splats: dict[str, Tensor], name: str = "Gaussians") -> Splats:
    """The scene layer of Gaussians in the 3DGS layout: detached, degree-0 colours (at
    degree 0 the colour does not depend on the view direction, so any direction does)."""
    s = {k: v.detach() for k, v in splats.items()}
    return Splats(
        means=s["means"],
        covariances=quat_scale_to_covar(s["quats"], torch.exp(s["scales"])),
        rgbs=sh_to_color(0, s["means"], s["sh0"]).clamp(max=1.0),
        opacities=sigmoid(s["opacities"]),
        name=name,
    )


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
