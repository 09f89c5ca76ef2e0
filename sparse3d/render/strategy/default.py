"""The 3DGS densification strategy: clone, split, prune and periodic opacity reset."""

from dataclasses import dataclass, field

import torch
from torch import Tensor

from sparse3d.core.elementwise import sigmoid
from sparse3d.render.rasterize import RasterMeta
from sparse3d.render.strategy.ops import (
    Optimizers,
    Params,
    check_params_and_optimizers,
    duplicate,
    remove,
    reset_opacity,
    split,
)


@dataclass
class DefaultState:
    """Running statistics between refinements, one row per Gaussian."""

    scene_scale: float
    """Scene extent; the 3-D scale thresholds are relative to it."""
    grad2d: Tensor | None = None
    """float [N] sum of image-plane gradient norms (pixels scaled to [-1, 1] per axis)."""
    count: Tensor | None = None
    """float [N] number of (camera, step) pairs in which the Gaussian was visible."""
    radii: Tensor | None = None
    """float [N] largest screen radius seen, as a fraction of the image's larger side."""


def drop_rows(state: DefaultState, keep: Tensor) -> DefaultState:
    """The state of the Gaussians kept by bool ``keep`` [N], after others were removed
    outside the strategy (e.g. floater elimination)."""
    rows = {k: None if getattr(state, k) is None else getattr(state, k)[keep] for k in ("grad2d", "count", "radii")}
    return DefaultState(scene_scale=state.scene_scale, **rows)


@dataclass
class DefaultStrategy:
    """Adaptive density control of 3DGS (Kerbl et al. 2023), as in gsplat's DefaultStrategy.

    Every ``refine_every`` steps in (``refine_start_iter``, ``refine_stop_iter``):

    - Gaussians whose mean image-plane gradient exceeds ``grow_grad2d`` are **cloned** when
      small (max scale <= ``grow_scale3d`` x scene scale) or **split** in two when large
      (or, before ``refine_scale2d_stop_iter``, when their screen radius exceeds
      ``grow_scale2d``);
    - Gaussians with opacity < ``prune_opa`` are **pruned**, and after the first opacity
      reset also those larger than ``prune_scale3d`` x scene scale (or, before
      ``refine_scale2d_stop_iter``, ``prune_scale2d`` on screen).

    Every ``reset_every`` steps opacities are **reset** to at most 2 x ``prune_opa``. The
    optimizer state rows follow every edit. With ``absgrad`` (AbsGS) the gradient statistic
    is the per-pixel absolute gradient; raise ``grow_grad2d`` (about 0.0008) with it.

    Examples:
        >>> strategy = DefaultStrategy(refine_start_iter=100)
        >>> state = strategy.initialize_state(scene_scale=1.0)
        >>> # per step: render -> strategy.step_pre_backward(params, optimizers, state, step, meta)
        >>> #           loss.backward() -> strategy.step_post_backward(params, optimizers, state, step, meta)
    """

    prune_opa: float = 0.005
    """Opacity below which Gaussians are pruned."""
    grow_grad2d: float = 0.0002
    """Mean image-plane gradient norm above which Gaussians are cloned or split."""
    grow_scale3d: float = 0.01
    """Max scale (x scene scale) separating clone (at most) from split (above)."""
    grow_scale2d: float = 0.05
    """Screen radius (fraction of the image) above which Gaussians are split."""
    prune_scale3d: float = 0.1
    """Max scale (x scene scale) above which Gaussians are pruned after the first reset."""
    prune_scale2d: float = 0.15
    """Screen radius (fraction of the image) above which Gaussians are pruned."""
    refine_scale2d_stop_iter: int = 0
    """Step until which the screen-size rules apply; 0 turns them off."""
    refine_start_iter: int = 500
    """First step after which refinement runs."""
    refine_stop_iter: int = 15_000
    """Step from which refinement stops."""
    reset_every: int = 3000
    """Period of the opacity reset."""
    refine_every: int = 100
    """Period of refinement."""
    pause_refine_after_reset: int = 0
    """Steps after each reset during which refinement is skipped."""
    absgrad: bool = False
    """Use the absolute per-pixel gradient (``means2d.absgrad``, AbsGS) as the statistic."""
    revised_opacity: bool = False
    """Give split children the opacity 1 - sqrt(1 - o) (Rota Bulo et al. 2024)."""
    required: tuple[str, ...] = field(default=("means", "scales", "quats", "opacities"), repr=False)
    """Parameter names the strategy reads and writes."""

    def initialize_state(self, scene_scale: float = 1.0) -> DefaultState:
        """A fresh state; statistics are allocated lazily at the first step."""
        return DefaultState(scene_scale=scene_scale)

    def check_sanity(self, params: Params, optimizers: Optimizers) -> None:
        """Raises ValueError unless every parameter has its own single-tensor optimizer."""
        check_params_and_optimizers(params, optimizers, self.required)

    def step_pre_backward(self, params: Params, optimizers: Optimizers, state: DefaultState, step: int, meta: RasterMeta) -> None:
        """Keeps the gradient of ``meta.means2d`` (call after rendering, before backward)."""
        meta.means2d.retain_grad()

    def step_post_backward(
        self, params: Params, optimizers: Optimizers, state: DefaultState, step: int, meta: RasterMeta
    ) -> dict[str, int]:
        """Accumulates statistics, then refines / resets on schedule.

        Returns:
            counts of the edits made this step: ``cloned``, ``split``, ``pruned``.
        """
        report = {"cloned": 0, "split": 0, "pruned": 0}
        if step >= self.refine_stop_iter:
            return report
        self._update_state(params, state, meta)
        if step > self.refine_start_iter and step % self.refine_every == 0 and step % self.reset_every >= self.pause_refine_after_reset:
            report["cloned"], report["split"] = self._grow(params, optimizers, state, step)
            report["pruned"] = self._prune(params, optimizers, state, step)
            state.grad2d = state.count = state.radii = None
        if step % self.reset_every == 0 and step > 0:
            reset_opacity(params, optimizers, value=2.0 * self.prune_opa)
        return report

    def _update_state(self, params: Params, state: DefaultState, meta: RasterMeta) -> None:
        n = params["means"].shape[0]
        grads = meta.means2d.absgrad if self.absgrad else meta.means2d.grad
        if grads is None:
            raise ValueError(
                "DefaultStrategy: meta.means2d has no gradient; call step_pre_backward before backward"
                + (" and render with a backend that computes absgrad" if self.absgrad else "")
            )
        device = grads.device
        if state.grad2d is None:
            state.grad2d = torch.zeros(n, device=device)
            state.count = torch.zeros(n, device=device)
            state.radii = torch.zeros(n, device=device)
        # Gradients in normalised device coordinates, summed over the cameras of the batch.
        scale = grads.new_tensor([meta.width / 2.0, meta.height / 2.0]) * meta.n_cameras
        visible = (meta.radii > 0).all(dim=-1)  # [C, N]
        cam_ids, gs_ids = visible.nonzero(as_tuple=True)
        norms = (grads[cam_ids, gs_ids] * scale).norm(dim=-1)
        state.grad2d.index_add_(0, gs_ids, norms.to(state.grad2d.dtype))
        state.count.index_add_(0, gs_ids, torch.ones_like(norms, dtype=state.count.dtype))
        if self.refine_scale2d_stop_iter > 0:
            radii = meta.radii[cam_ids, gs_ids].max(dim=-1).values.float() / max(meta.width, meta.height)
            state.radii.index_reduce_(0, gs_ids, radii, "amax", include_self=True)

    def _grow(self, params: Params, optimizers: Optimizers, state: DefaultState, step: int) -> tuple[int, int]:
        grads = state.grad2d / state.count.clamp_min(1.0)
        high = grads > self.grow_grad2d
        small = torch.exp(params["scales"].detach()).max(dim=-1).values <= self.grow_scale3d * state.scene_scale
        clone = high & small
        to_split = high & ~small
        if step < self.refine_scale2d_stop_iter:
            to_split |= state.radii > self.grow_scale2d
        n_clone, n_split = int(clone.sum()), int(to_split.sum())
        # The screen radii follow the rows (children inherit their parent's) for pruning.
        if n_clone:
            duplicate(params, optimizers, clone)
            to_split = torch.cat([to_split, to_split.new_zeros(n_clone)])
            state.radii = torch.cat([state.radii, state.radii[clone]])
        if n_split:
            split(params, optimizers, to_split, revised_opacity=self.revised_opacity)
            state.radii = torch.cat([state.radii[~to_split], state.radii[to_split].repeat(2)])
        return n_clone, n_split

    def _prune(self, params: Params, optimizers: Optimizers, state: DefaultState, step: int) -> int:
        prune = sigmoid(params["opacities"].detach()) < self.prune_opa
        if step > self.reset_every:
            too_big = torch.exp(params["scales"].detach()).max(dim=-1).values > self.prune_scale3d * state.scene_scale
            if step < self.refine_scale2d_stop_iter:
                too_big |= state.radii > self.prune_scale2d
            prune |= too_big
        n_prune = int(prune.sum())
        if n_prune:
            remove(params, optimizers, prune)
        return n_prune
