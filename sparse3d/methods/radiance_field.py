"""What every ray-marched radiance field method shares: random ray batches from the
training views, sampling in the occupied cells, volume rendering over white, the MSE
loss with an L1 density regulariser, TensoRF's learning-rate decay and alpha mask, and
the held-out evaluation by the GaussianObject protocol.

A subclass (``strivec``, ``tensorf``, and Strivec's coarse density grid) builds its
field and its first occupancy; a field answers ``lookups(points)`` (what density and
colour both need, looked up once: Strivec's local tensors; None for the dense fields),
``sigma(points, lookups)`` and ``rgb(points, dirs, lookups)``.
"""

from dataclasses import dataclass, field
from typing import Any

import torch
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
from sparse3d.engine.method import (
    EvalSource,
    Method,
    StepOutputs,
    TrainingCallback,
    require_own_data,
)
from sparse3d.engine.scene import CameraFrusta, SceneLayer
from sparse3d.engine.seeding import derive_seed, step_generator
from sparse3d.fields.occupancy import (
    Occupancy,
    cells_holding,
    dilated,
    visible_occupancy,
)
from sparse3d.geometry.cameras import Cameras
from sparse3d.geometry.rays import (
    camera_depths,
    image_pixels,
    pixel_rays,
    subpixel_offsets,
)
from sparse3d.methods.view_eval import heldout_view_report
from sparse3d.render.volume import composite, volume_weights

JITTER_KEY = 7919  # separates the sample jitter's seed from the ray choice's


@dataclass
class RayRenderConfig:
    """Ray batches, sampling and the optimisation schedule (defaults: TensoRF / Strivec on
    Synthetic-NeRF)."""

    scene_box: tuple[float, float, float, float, float, float] = (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)
    """Lower and upper corner of the box the field lives in (the synthetic objects fit the
    unit sphere; Blender scenes use this box too)."""
    batch_rays: int = field(default=4096, metadata=at_least(1))
    """Rays per training step."""
    step_ratio: float = field(default=0.5, metadata=positive())
    """Sampling step as a fraction of the field's cell (TensoRF's step_ratio)."""
    near: float = field(default=0.0, metadata=at_least(0))
    """Nearest distance along a ray that is sampled."""
    occupancy_voxel: float = field(default=0.05, metadata=positive())
    """Cell of the occupancy (alpha mask) grid, world units."""
    alpha_mask_steps: tuple[int, ...] = (2000, 4000)
    """Steps after which the occupancy shrinks to where the density is visible."""
    alpha_mask_threshold: float = field(default=1e-4, metadata=between(0, 1))
    """Opacity per step below which a cell counts as empty."""
    weight_threshold: float = field(default=1e-4, metadata=between(0, 1))
    """Samples with a rendering weight at most this skip the colour (TensoRF's
    rm_weight_mask_thre)."""
    min_transmittance: float = field(default=1e-4, metadata=between(0, 1))
    """A ray stops where less light than this reaches (early termination)."""
    lr: float = field(default=0.02, metadata=positive())
    """Learning rate of the field's tensors."""
    lr_network: float = field(default=1e-3, metadata=positive())
    """Learning rate of the basis and the shader."""
    lr_decay_ratio: float = field(default=0.1, metadata=between(0, 1, closed=False))
    """Every learning rate decays exponentially to this fraction at the last step."""
    l1_weight_initial: float = field(default=8e-5, metadata=at_least(0))
    """Weight of the L1 density regulariser until the first alpha-mask step."""
    l1_weight_rest: float = field(default=4e-5, metadata=at_least(0))
    """Its weight after."""
    eval_chunk: int = field(default=16384, metadata=at_least(1))
    """Rays per chunk when rendering whole images."""
    jitter_pixels: bool = False
    """Each training ray passes through a uniformly random point of its pixel instead of
    its centre, so that the field is fitted to the pixel's whole footprint, as a camera's
    pixel (and a supersampled render) records it."""
    random_background: bool = False
    """Each training ray is rendered over a random colour, and its pixel composited over
    the same colour by the object's coverage, so that semi-transparent floaters, invisible
    against white, cost as much as anywhere else (needs masks or alphas in the data)."""
    eval_supersampling: int = field(default=1, metadata=at_least(1))
    """The held-out evaluation renders each pixel as the mean of S x S rays on a regular
    grid inside it (1: one ray through the centre), S^2 the rays; the viewer and videos
    render one ray per pixel."""

    def __post_init__(self) -> None:
        check_ranges(self)
        lower, upper = self.scene_box[:3], self.scene_box[3:]
        if any(hi <= lo for lo, hi in zip(lower, upper)):
            raise ValueError(f"scene_box must be (x0, y0, z0, x1, y1, z1) with x1 > x0 etc., got {self.scene_box}")


@dataclass
class RayDataConfig:
    """Which images train and which evaluate."""

    format: DataFormat = "auto"
    """Data format: auto, nerfstudio, blender, colmap, colmap-bin or colmap-txt."""
    num_train_views: int | None = field(default=None, metadata=at_least(1))
    """Train on the data's sparse_<k>.txt split; None keeps the format's own split (for
    the synthetic objects: the 9 rig views plus any dense views)."""

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass
class RadianceFieldConfig(MethodConfig):
    render: RayRenderConfig = field(default_factory=RayRenderConfig)
    """Ray batches, sampling and schedule."""
    datamanager: RayDataConfig = field(default_factory=RayDataConfig)
    """Training and held-out views."""


@dataclass(frozen=True)
class RayBatch:
    """One step's rays."""

    views: Tensor
    """int64 [R] the view of each ray."""
    pixels: Tensor
    """int64 [R, 2] (u, v) its pixel."""
    offsets: Tensor | None
    """float32 [R, 2] where in that pixel it passes (pixel_rays' offsets); None: the centre."""
    background: Tensor | None
    """float32 [R, 3] the colour behind it; None: white."""


@dataclass(frozen=True)
class RayOutputs:
    """Rendered rays."""

    rgb: Tensor
    """float [R, 3] over the rays' background (white unless given)."""
    alpha: Tensor
    """float [R] accumulated opacity."""
    distance: Tensor
    """float [R] expected distance along the ray (weighted by opacity, 0 for none)."""
    samples: int
    """How many samples the rays took."""


class RadianceFieldMethod(Method):
    """A radiance field rendered by ray marching; subclasses set ``self.field`` and
    ``self.occupancy`` and say how long a step is."""

    config: RadianceFieldConfig
    field: nn.Module
    occupancy: Occupancy

    def __init__(self, config: RadianceFieldConfig, world: World, device: torch.device) -> None:
        super().__init__(config, world, device)
        if config.data is None:
            raise ValueError(f"{type(self).__name__.lower()} needs data=PATH (e.g. a folder written by `sparse3d-data objects`)")
        try:
            self.data = load_multiview(config.data, config.datamanager.format, config.datamanager.num_train_views)
        except FileNotFoundError as error:
            if config.datamanager.format != "blender":
                raise
            raise FileNotFoundError(f"{error} (the strivec and tensorf presets read the Blender copy of the synthetic objects "
                                    "for its soft alphas; datamanager.format=auto reads other data)") from None
        if len(self.data.train_indices) == 0:
            raise ValueError(f"{self.data.source}: the split has no training views")
        self.cameras = self.data.cameras.to(device)
        self.images = self.data.images.to(device)
        coverage = self.data.coverage()
        if config.render.random_background and coverage is None:
            raise ValueError(f"{self.data.source}: render.random_background needs object masks (masks/ or images with alpha); the data has none")
        self.coverage = None if coverage is None else coverage.to(device)  # uint8 [N, H, W]
        box = torch.tensor(config.render.scene_box, dtype=torch.float32)
        self.box_lower, self.box_upper = box[:3], box[3:]

    # --- what a subclass provides -------------------------------------------------------

    def sample_step(self) -> float:
        """The distance between samples along a ray now (world units)."""
        raise NotImplementedError

    def param_group_params(self) -> dict[str, list[nn.Parameter]]:
        """The parameters of each group: "density", "appearance" (the field's tensors, at
        ``render.lr``) and "network" (at ``render.lr_network``)."""
        return {"density": self.field.density_vectors(), "appearance": self.field.app_vectors(), "network": self.field.network()}

    def l1_term(self) -> Tensor:
        """The density regulariser (mean absolute density tensor values)."""
        return self.field.l1_density()

    def grow(self, step: int, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        """The field's upsampling after ``step`` steps, if any; nothing by default."""

    def fit_to_mask(self, step: int, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        """What the field does once the alpha mask has been rebuilt after ``step`` steps;
        nothing by default."""

    # --- training ------------------------------------------------------------------------

    def get_param_groups(self) -> list[dict[str, Any]]:
        r = self.config.render
        lrs = {"density": r.lr, "appearance": r.lr, "network": r.lr_network}
        return [
            {"name": name, "params": params, "lr": lrs[name], "betas": (0.9, 0.99)}
            for name, params in self.param_group_params().items() if params
        ]

    def get_train_batch(self, step: int) -> RayBatch:
        """``render.batch_rays`` random (view, pixel) pairs of the training views, each ray
        through a random point of its pixel with ``render.jitter_pixels`` and over a random
        colour with ``render.random_background``."""
        r = self.config.render
        g = step_generator(self.config.trainer.seed, step)
        train = self.data.train_indices
        views = train[torch.randint(len(train), (r.batch_rays,), generator=g)]
        u = torch.randint(self.cameras.width, (len(views),), generator=g)
        v = torch.randint(self.cameras.height, (len(views),), generator=g)
        offsets = torch.rand(len(views), 2, generator=g).to(self.device) if r.jitter_pixels else None
        background = torch.rand(len(views), 3, generator=g).to(self.device) if r.random_background else None
        return RayBatch(views.to(self.device), torch.stack([u, v], -1).to(self.device), offsets, background)

    def get_outputs(self, batch: RayBatch, step: int) -> RayOutputs:
        origins, dirs = pixel_rays(self.cameras, batch.views, batch.pixels, batch.offsets)
        g = torch.Generator().manual_seed(derive_seed(self.config.trainer.seed, step, JITTER_KEY))
        jitter = torch.rand(len(origins), generator=g).to(self.device)
        return self.render_rays(origins, dirs, jitter, batch.background)

    def render_rays(self, origins: Tensor, dirs: Tensor, jitter: Tensor | None = None,
                    background: Tensor | None = None) -> RayOutputs:
        """Renders rays ``origins``, ``dirs`` float32 [R, 3] (unit directions) over
        ``background`` float32 [R, 3] (None: white).

        Samples lie every ``sample_step()`` in the occupied cells; colour is evaluated
        only where the rendering weight exceeds ``render.weight_threshold``.
        """
        r = self.config.render
        samples, points, lookups, sigmas, weights, transmittance = self.weighted_samples(self.occupancy, origins, dirs, jitter)
        ray_ids = samples.ray_ids
        shade = weights > r.weight_threshold
        colors = sigmas.new_zeros(len(sigmas), 3)
        if shade.any():
            kept = None if lookups is None else lookups.select(shade)
            colors = colors.index_put((shade.nonzero()[:, 0],), self.field.rgb(points[shade], dirs[ray_ids[shade]], kept))
        values = torch.cat([colors, samples.t[:, None], torch.ones_like(samples.t)[:, None]], 1)
        rendered = composite(weights, transmittance, values, samples.offsets)
        behind = transmittance[:, None] if background is None else transmittance[:, None] * background
        rgb = rendered[:, :3] + behind
        return RayOutputs(rgb, rendered[:, 4], rendered[:, 3], len(samples.t))

    def weighted_samples(self, occupancy: Occupancy, origins: Tensor, dirs: Tensor, jitter: Tensor | None = None):
        """The samples of rays ``origins``, ``dirs`` float32 [R, 3] in ``occupancy``, their
        points float32 [S, 3], the field's lookups there, densities float [S], rendering
        weights float [S] and the rays' final transmittance float [R]."""
        r = self.config.render
        samples = occupancy.march(origins, dirs, self.sample_step(), r.near, jitter)
        points = origins[samples.ray_ids] + samples.t[:, None] * dirs[samples.ray_ids]
        lookups = self.field.lookups(points)
        sigmas = self.field.sigma(points, lookups)
        weights, transmittance = volume_weights(sigmas, torch.full_like(sigmas, self.sample_step()), samples.offsets, r.min_transmittance)
        return samples, points, lookups, sigmas, weights, transmittance

    def get_loss_dict(self, outputs: RayOutputs, batch: RayBatch, step: int) -> dict[str, Tensor]:
        """MSE against the training pixels (over the rays' background) plus the L1 density term."""
        losses = {"mse": torch.mean((outputs.rgb - self.batch_targets(batch)) ** 2)}
        r = self.config.render
        first_mask = min(r.alpha_mask_steps, default=self.config.trainer.max_steps)
        weight = r.l1_weight_initial if step < first_mask else r.l1_weight_rest
        if weight > 0:
            losses["l1"] = weight * self.l1_term()
        return losses

    def batch_targets(self, batch: RayBatch) -> Tensor:
        """float32 [R, 3] the pixels of ``batch`` over its rays' background."""
        u, v = batch.pixels[:, 0], batch.pixels[:, 1]
        target = self.images[batch.views, v, u].float() / 255.0
        if batch.background is None:
            return target
        coverage = self.coverage[batch.views, v, u].float()[:, None] / 255.0
        return target + (1.0 - coverage) * (batch.background - 1.0)  # the images are over white

    def get_training_callbacks(self) -> list[TrainingCallback]:
        return [TrainingCallback("before_step", self._decay_learning_rates), TrainingCallback("after_step", self._refine)]

    def _decay_learning_rates(self, step: int, optimizers: dict[str, torch.optim.Optimizer], _: StepOutputs | None) -> None:
        r = self.config.render
        factor = r.lr_decay_ratio ** (step / self.config.trainer.max_steps)
        base = {"density": r.lr, "appearance": r.lr, "network": r.lr_network}
        for name, optimizer in optimizers.items():
            optimizer.param_groups[0]["lr"] = base[name] * factor

    def _refine(self, step: int, optimizers: dict[str, torch.optim.Optimizer], _: StepOutputs | None) -> None:
        done = step + 1
        self.grow(done, optimizers)
        if done in self.config.render.alpha_mask_steps:
            self.occupancy = self.visible(self.occupancy)
            self.fit_to_mask(done, optimizers)

    def density(self, points: Tensor) -> Tensor:
        """float [P] the field's density at world points ``points`` float32 [P, 3]."""
        return self.field.sigma(points, self.field.lookups(points))

    def visible(self, occupancy: Occupancy) -> Occupancy:
        """``occupancy`` narrowed to where the field is visible (the alpha mask) and seen
        (:meth:`seen`)."""
        with torch.no_grad():
            return self.seen(visible_occupancy(occupancy, self.density, self.sample_step(), self.config.render.alpha_mask_threshold))

    def seen(self, occupancy: Occupancy) -> Occupancy:
        """The cells of ``occupancy`` where a sample of some training pixel's ray weighs more
        than ``render.weight_threshold``, and their neighbours: the alpha mask alone keeps
        the inside of a solid object, which no ray reaches once its surface is opaque."""
        r = self.config.render
        kept = torch.zeros(len(occupancy.keys), dtype=torch.bool, device=self.device)
        pixels = image_pixels(self.cameras.width, self.cameras.height, self.device)
        for view in self.data.train_indices.tolist():
            for chunk in pixels.split(r.eval_chunk):
                origins, dirs = pixel_rays(self.cameras, torch.full((len(chunk),), view, device=self.device), chunk)
                _, points, _, _, weights, _ = self.weighted_samples(occupancy, origins, dirs)
                kept |= cells_holding(occupancy, points[weights > r.weight_threshold])
        return dilated(occupancy, kept)

    # --- resuming ------------------------------------------------------------------------

    def get_extra_state(self) -> dict[str, Any]:
        # The alpha mask is a function of the weights at the step it was built: a resumed
        # run needs the very cells an uninterrupted one samples.
        return {"occupancy": self.occupancy.keys.cpu()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.occupancy = Occupancy(self.occupancy.grid, state["occupancy"].to(self.device))

    def load_state_dict(self, state_dict, strict: bool = True):
        # Upsampling, cropping and pruning change the tensors' shapes: take the checkpoint's.
        for name, value in [*self.named_parameters(), *self.named_buffers()]:
            if name in state_dict and state_dict[name].shape != value.shape:
                module_name, _, attr = name.rpartition(".")
                empty = torch.empty_like(state_dict[name], device=self.device)
                setattr(self.get_submodule(module_name), attr, nn.Parameter(empty) if isinstance(value, nn.Parameter) else empty)
        return super().load_state_dict(state_dict, strict)

    # --- rendering and evaluation ----------------------------------------------------------

    def get_outputs_for_camera(self, camera: Cameras) -> dict[str, Tensor]:
        """Renders one camera over white, one ray per pixel (:meth:`render_camera`)."""
        return self.render_camera(camera, 1)

    def render_camera(self, camera: Cameras, supersampling: int) -> dict[str, Tensor]:
        """Renders one camera over white, each pixel the mean of ``supersampling`` squared
        rays (:func:`subpixel_offsets`), about ``render.eval_chunk`` rays at a time.

        Returns:
            "rgb" float [H, W, 3] in [0, 1], "alpha" float [H, W, 1] and "depth" float
            [H, W, 1] expected camera-frame z (0 where alpha is 0).
        """
        if len(camera) != 1:
            raise ValueError(f"render_camera: expected one camera, got {len(camera)}")
        camera = camera.to(self.device)
        offsets = subpixel_offsets(supersampling, self.device)  # [S^2, 2]
        pixels = image_pixels(camera.width, camera.height, self.device).repeat_interleave(len(offsets), 0)
        offsets = offsets.repeat(camera.width * camera.height, 1)
        views = torch.zeros(len(pixels), dtype=torch.int64, device=self.device)
        chunk_rays = max(1, self.config.render.eval_chunk // len(offsets)) * len(offsets)  # whole pixels per chunk
        rgb, alpha, depth = [], [], []
        with torch.no_grad():
            for start in range(0, len(pixels), chunk_rays):
                chunk = slice(start, start + chunk_rays)
                origins, dirs = pixel_rays(camera, views[chunk], pixels[chunk], offsets[chunk])
                out = self.render_rays(origins, dirs)
                rgb.append(out.rgb.clamp(0, 1))
                alpha.append(out.alpha)
                depth.append(out.distance * camera_depths(camera, views[chunk], dirs))
        h, w, s2 = camera.height, camera.width, supersampling ** 2
        return {"rgb": torch.cat(rgb).reshape(h, w, s2, 3).mean(2), "alpha": torch.cat(alpha).reshape(h, w, s2, 1).mean(2),
                "depth": torch.cat(depth).reshape(h, w, s2, 1).mean(2)}

    def get_eval_metrics(self, step: int) -> dict[str, float]:
        report = self.get_eval_report(step)
        return {k: v for k, v in report.items() if isinstance(v, float)}

    def get_eval_report(self, step: int, source: EvalSource | None = None) -> dict[str, Any]:
        """PSNR / SSIM / LPIPS of each held-out view by the GaussianObject protocol (the
        render over white, unmasked, ``render.eval_supersampling`` squared rays per pixel),
        the same inside the mask, and their means, plus the field's parameter count."""
        require_own_data(self, source)
        render = lambda camera: self.render_camera(camera, self.config.render.eval_supersampling)["rgb"]  # noqa: E731
        report = heldout_view_report(render, self.data, self.data.test_indices, self.device)
        return {**report, "num_parameters": float(self.field.num_parameters())}

    def get_scene_layers(self) -> list[SceneLayer]:
        """The training cameras with their images."""
        train = self.data.train_indices
        return [CameraFrusta(self.data.cameras[train], self.data.images[train], name="training views")]


def swap_parameters(optimizers: dict[str, torch.optim.Optimizer],
                    swapped: dict[nn.Parameter, tuple[nn.Parameter, Tensor | None]]) -> None:
    """Puts each new parameter in place of the old one in whichever optimiser holds it,
    given as ``swapped[old] = (new, rows)``. With ``rows`` (bool [N]) the new one is
    those rows of the old one and keeps their optimiser state (Adam's moments are per
    value: the kept rows train on as if the others had never been there); with None it
    starts with fresh state (TensoRF rebuilds its optimiser after upsampling)."""
    for optimizer in optimizers.values():
        group = optimizer.param_groups[0]
        for i, param in enumerate(group["params"]):
            if param in swapped:
                new, rows = swapped[param]
                state = optimizer.state.pop(param, {})
                if state and rows is not None:
                    optimizer.state[new] = {k: v[rows] if v.shape == param.shape else v for k, v in state.items()}
                group["params"][i] = new
