"""The 3DGS-as-MCMC strategy: relocate dead Gaussians, grow towards a cap, perturb centres."""

from dataclasses import dataclass

from sparse3d.core.elementwise import sigmoid
from sparse3d.render.rasterize import RasterMeta
from sparse3d.render.strategy.ops import (
    Optimizers,
    Params,
    check_params_and_optimizers,
    inject_noise_to_position,
    relocate,
    sample_add,
)


@dataclass
class MCMCState:
    """The MCMC strategy keeps no per-Gaussian statistics; the state exists for a uniform API."""


@dataclass
class MCMCStrategy:
    """3D Gaussian Splatting as Markov Chain Monte Carlo (Kheradmand et al. 2024,
    https://arxiv.org/abs/2404.09591), as in gsplat's MCMCStrategy.

    Every ``refine_every`` steps in (``refine_start_iter``, ``refine_stop_iter``):

    - **relocate**: Gaussians with opacity <= ``min_opacity`` move onto live ones sampled in
      proportion to opacity, which share their opacity and scale with the copies so that
      the rendered density is preserved (the paper's eq. 9);
    - **add**: min(``cap_max``, 1.05 N) - N new Gaussians are spawned the same way.

    Every step, nearly transparent Gaussians get Sigma-shaped position noise scaled by
    ``noise_lr`` x the current means learning rate (the SGLD step). Optimizer state rows
    follow every edit. Pair it with opacity and scale L1 regularisers in the loss.

    Examples:
        >>> strategy = MCMCStrategy(cap_max=200_000)
        >>> state = strategy.initialize_state()
        >>> # per step: loss.backward(); optimizer steps; then
        >>> # strategy.step_post_backward(params, optimizers, state, step, meta, lr=means_lr)
    """

    cap_max: int = 1_000_000
    """Largest number of Gaussians."""
    noise_lr: float = 5e5
    """Scale of the position noise, multiplied by the means learning rate."""
    refine_start_iter: int = 500
    """First step after which relocation and growth run."""
    refine_stop_iter: int = 25_000
    """Step from which relocation and growth stop."""
    refine_every: int = 100
    """Period of relocation and growth."""
    min_opacity: float = 0.005
    """Opacity at or below which a Gaussian is dead and relocated."""

    def initialize_state(self) -> MCMCState:
        """A fresh (empty) state."""
        return MCMCState()

    def check_sanity(self, params: Params, optimizers: Optimizers) -> None:
        """Raises ValueError unless every parameter has its own single-tensor optimizer."""
        check_params_and_optimizers(params, optimizers, ("means", "scales", "quats", "opacities"))

    def step_pre_backward(self, params: Params, optimizers: Optimizers, state: MCMCState, step: int, meta: RasterMeta) -> None:
        """Nothing to do before backward (kept for the common strategy interface)."""

    def step_post_backward(
        self, params: Params, optimizers: Optimizers, state: MCMCState, step: int, meta: RasterMeta, lr: float
    ) -> dict[str, int]:
        """Relocates and adds on schedule, then injects position noise.

        Args:
            lr: the current learning rate of ``means``.

        Returns:
            counts of the edits made this step: ``relocated``, ``added``.
        """
        report = {"relocated": 0, "added": 0}
        if self.refine_start_iter < step < self.refine_stop_iter and step % self.refine_every == 0:
            dead = sigmoid(params["opacities"].detach()) <= self.min_opacity
            report["relocated"] = int(dead.sum())
            relocate(params, optimizers, dead)
            n = params["means"].shape[0]
            report["added"] = max(0, min(self.cap_max, int(1.05 * n)) - n)
            sample_add(params, optimizers, report["added"])
        inject_noise_to_position(params, scaler=lr * self.noise_lr)
        return report
