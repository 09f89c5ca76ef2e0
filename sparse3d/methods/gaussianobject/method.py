"""Stage ``refine`` of gaussianobject, the method's own training in the run directory:
Gaussian repair with distance-aware novel views (GaussianObject, Yang et al. 2024).

Starting from the coarse Gaussians, each step renders one input view (the reference loss
of ``splat`` with the silhouette term, over a random background) and one novel view placed
in the gaps between the inputs, fitted to its repaired image:

    L = (1 - r) L_gs + r w d_w (l1 L1 + l2 L2)

r falls linearly from 1 to 0.5 over ``refine.around_gt_steps`` and is 0 afterwards (the
last steps fine-tune on the inputs alone); w is the repair model's confidence and d_w the
distance weight (reconstruction.novel_views). Every ``refine.refresh_every`` steps the
novel views are drawn again, rendered and repaired; the repaired set is part of the
checkpoint, so a resumed run fits exactly what an uninterrupted one would.
"""

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from sparse3d.engine.distributed import World
from sparse3d.engine.method import StepOutputs, TrainingCallback
from sparse3d.engine.scene import CameraFrusta, PointCloud, SceneLayer
from sparse3d.engine.seeding import derive_seed, step_generator
from sparse3d.geometry.cameras import Cameras
from sparse3d.methods.gaussianobject.config import GaussianObjectConfig
from sparse3d.methods.gaussianobject.repair_training import load_repair_model
from sparse3d.methods.gaussianobject.stages import (
    finish_restart,
    run_stages,
    stage_summary,
)
from sparse3d.methods.splat import Splat, SplatOutputs, render_splats, splats_layer
from sparse3d.reconstruction.floaters import LAMBDA_END, floater_mask
from sparse3d.reconstruction.novel_views import (
    distance_weights,
    novel_view_rig,
    rig_cameras,
    sample_angles_between_views,
)
from sparse3d.reconstruction.orbit import video_unavailable, write_orbit
from sparse3d.reconstruction.views import write_renders
from sparse3d.render.ply import read_gaussians_ply, read_points_ply
from sparse3d.render.strategy.default import DefaultStrategy

NOVEL_KEY = 7919  # separates the novel-view draws from the step seeds
FLOATER_POINT_SIZE = 0.02
"""Drawn size of a flagged floater centre, world units."""


class GaussianObject(Splat):
    """Sparse-view object reconstruction: the refinement stage on top of the earlier ones."""

    config: GaussianObjectConfig

    @classmethod
    def prepare(cls, config: GaussianObjectConfig, world: World) -> None:
        """Runs (or resumes) the stages before refinement: hull, coarse, loo, repair_model."""
        run_stages(config, world)

    def __init__(self, config: GaussianObjectConfig, world: World, device: torch.device) -> None:
        super().__init__(config, world, device)
        train = self.data.train_indices
        self.rig = novel_view_rig(self.data.cameras[train])
        self.train_centers = self.data.cameras[train].centers
        self.novel: dict[str, Tensor] | None = None  # the repaired novel views, see _refresh
        self._repair = None  # loaded at the first refresh: evaluation does not need it

    def _initial_gaussians(self, seed: int) -> dict[str, Tensor]:
        """The coarse stage's Gaussians."""
        return read_gaussians_ply(Path(self.config.output) / "coarse" / "point_cloud.ply")

    def densification(self) -> DefaultStrategy:
        return self.config.refine.strategy

    def repair_active(self, step: int) -> bool:
        """Whether ``step`` fits a repaired novel view."""
        return self.config.repair.kind != "none" and step < self.config.refine.around_gt_steps

    def get_train_batch(self, step: int) -> Tensor:
        """int64 [2] (input view index, slot of the novel view in the repaired set), the slot
        -1 when the step has no repair loss."""
        g = step_generator(self.config.trainer.seed, step)
        train = self.train_views(step)
        view = train[torch.randint(len(train), (), generator=g)]
        slot = torch.randint(self.config.refine.refresh_size, (), generator=g) if self.repair_active(step) else -1
        return torch.stack([view, torch.as_tensor(slot)])

    def get_outputs(self, batch: Tensor, step: int) -> SplatOutputs:
        """Renders the input view (over its background) and, when the step has one, the
        novel view (over white) in one pass, so densification sees both."""
        if batch[1] < 0:
            return super().get_outputs(batch[:1], step)
        novel = Cameras(self.novel["viewmats"][batch[1:]], self.novel["Ks"][batch[1:]], self.cameras.width, self.cameras.height)
        cameras = _concat(self.cameras[batch[:1]], novel.to(self.device))
        backgrounds = torch.cat([self.step_backgrounds(1, step), torch.ones(1, 3, device=self.device)])
        rgb, alpha, meta = render_splats(self.splats, cameras, self.config.model.raster, self.sh_degree, backgrounds)
        if meta.means2d.requires_grad:
            meta.means2d.retain_grad()
        return SplatOutputs(rgb, alpha, backgrounds, meta)

    def get_loss_dict(self, outputs: SplatOutputs, batch: Tensor, step: int) -> dict[str, Tensor]:
        """(1 - r) x the reference losses + r x the weighted repair loss (module docstring)."""
        reference = SplatOutputs(outputs.rgb[:1], outputs.alpha[:1], outputs.background[:1], outputs.meta)
        losses = self.reference_losses(reference, batch[:1])
        if batch[1] < 0:
            return losses
        r = 1.0 - 0.5 * step / self.config.refine.around_gt_steps
        losses = {k: (1.0 - r) * v for k, v in losses.items()}
        target = self.novel["images"][batch[1]].to(self.device)
        weight = float(self.novel["weights"][batch[1]])
        render = outputs.rgb[1]
        c = self.config.refine
        losses["repair"] = r * weight * (c.l1_weight * F.l1_loss(render, target) + c.l2_weight * F.mse_loss(render, target))
        return losses

    def get_training_callbacks(self) -> list[TrainingCallback]:
        return [TrainingCallback("before_step", self._refresh), *super().get_training_callbacks()]

    def _refresh(self, step: int, optimizers: dict[str, torch.optim.Optimizer], produced: StepOutputs | None) -> None:
        """Every ``refine.refresh_every`` steps of the repair phase: new novel views in the
        gaps between the inputs, rendered and repaired (a resumed run keeps the set of its
        checkpoint)."""
        c = self.config.refine
        if not self.repair_active(step) or (step % c.refresh_every and self.novel is not None):
            return
        if self._repair is None:
            # Not a submodule: it is the repair stage's artefact, not part of this run's state.
            object.__setattr__(self, "_repair", load_repair_model(Path(self.config.output), self.config.repair, self.device))
        g = torch.Generator().manual_seed(derive_seed(self.config.trainer.seed, step, NOVEL_KEY))
        angles = sample_angles_between_views(self.rig, c.refresh_size, g)
        K = self.data.cameras.Ks[self.data.train_indices[0]]
        cameras = rig_cameras(self.rig, angles, self.cameras.width, self.cameras.height, K)
        white = torch.ones(len(cameras), 3, device=self.device)
        with torch.no_grad():
            rgb, _, _ = render_splats(self.splats, cameras.to(self.device), self.config.model.raster, self.sh_degree, white)
            repaired, confidence = self._repair.repair(rgb[..., :3].clamp(0, 1), g)
        weights = confidence.cpu()
        if c.distance_weighting:
            weights = weights * distance_weights(cameras.centers, self.train_centers).float()
        self.novel = {"viewmats": cameras.viewmats, "Ks": cameras.Ks, "images": repaired.cpu(), "weights": weights}

    def get_extra_state(self) -> dict[str, Any]:
        return {"strategy": super().get_extra_state(), "novel": self.novel}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        super().set_extra_state(state["strategy"])
        self.novel = state["novel"]

    def get_scene_layers(self) -> list[SceneLayer]:
        """Splat's layers (the Gaussians, the input views), then, hidden at first, the
        earlier stages: the visual hull's voxels, the coarse Gaussians, the centres the
        floater test flags in the Gaussians now (at its final threshold), and the repaired
        novel views the refinement fits."""
        run = Path(self.config.output)
        layers = super().get_scene_layers()
        if (run / "hull.ply").exists():
            points, colors = read_points_ply(run / "hull.ply")
            voxel = float((points.amax(0) - points.amin(0)).max()) / self.config.hull.resolution
            layers.append(PointCloud(points, colors, point_size=voxel, name="visual hull", visible=False))
        if (run / "coarse" / "point_cloud.ply").exists():
            coarse = splats_layer(read_gaussians_ply(run / "coarse" / "point_cloud.ply"), name="coarse Gaussians")
            layers.append(dataclasses.replace(coarse, visible=False))
        means = self.splats["means"].detach().cpu()
        flagged = means[floater_mask(means, LAMBDA_END)]
        red = torch.tensor([[255, 40, 40]], dtype=torch.uint8).expand(len(flagged), 3)
        layers.append(PointCloud(flagged, red, point_size=FLOATER_POINT_SIZE, name="floaters", visible=False))
        if self.novel is not None:
            novel = Cameras(self.novel["viewmats"], self.novel["Ks"], self.cameras.width, self.cameras.height)
            images = (self.novel["images"].clamp(0, 1) * 255).round().to(torch.uint8)
            layers.append(CameraFrusta(novel, images, name="repaired views", visible=False))
        return layers

    def export(self, run_dir: Path) -> None:
        """Writes point_cloud.ply (3DGS layout), renders/NAME.png of each held-out view,
        orbit.png (and orbit.mp4 with the ``video`` extra), and ends a ``stage=`` restart."""
        super().export(run_dir)
        test = self.data.test_indices.tolist()
        write_renders(self, self.data.cameras[test], [self.data.image_names[i] for i in test], Path(run_dir) / "renders")
        write_orbit(self, self.data.cameras[self.data.train_indices], Path(run_dir))
        finish_restart(run_dir)

    def summary(self, run_dir: Path) -> list[str]:
        """Each stage's time and figure, then where the outputs are."""
        run = Path(run_dir)
        written = [name for name in ("point_cloud.ply", "renders/", "orbit.png", "orbit.mp4") if (run / name).exists()]
        no_video = video_unavailable()
        return [*stage_summary(run), f"outputs: {', '.join(written)}" + (f" (no orbit.mp4: {no_video})" if no_video else "")]


def _concat(a: Cameras, b: Cameras) -> Cameras:
    """Two camera batches of one image size as one."""
    return Cameras(torch.cat([a.viewmats, b.viewmats]), torch.cat([a.Ks, b.Ks]), a.width, a.height)
