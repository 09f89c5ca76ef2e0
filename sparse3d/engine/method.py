"""The contract between a method and the trainer (nerfstudio's model contract, condensed)."""

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from torch import Tensor, nn

from sparse3d.engine.config import MethodConfig
from sparse3d.engine.distributed import World


@dataclass
class TrainingCallback:
    """A hook the trainer calls around optimisation steps (e.g. densification)."""

    where: Literal["before_step", "after_step"]
    """Before the forward pass, or after the optimiser step."""
    fn: Callable[[int, dict[str, torch.optim.Optimizer]], None]
    """Called with the step number and the optimisers (one per parameter group, by name)."""
    every: int = 1
    """Call on steps divisible by this."""


@dataclass
class ViewerContent:
    """What the web viewer draws for a method (world frame; any field may be None)."""

    splat_centers: Tensor | None = None
    """float [N, 3] Gaussian centres."""
    splat_covariances: Tensor | None = None
    """float [N, 3, 3] Gaussian covariances."""
    splat_rgbs: Tensor | None = None
    """float [N, 3] Gaussian colours in [0, 1] (view-independent part)."""
    splat_opacities: Tensor | None = None
    """float [N] Gaussian opacities in [0, 1]."""
    camera_viewmats: Tensor | None = None
    """float [C, 4, 4] world-to-camera transforms (OpenCV) of the training views."""
    camera_Ks: Tensor | None = None
    """float [C, 3, 3] intrinsics of the training views."""
    camera_images: Tensor | None = None
    """uint8 [C, H, W, 3] the training images."""


class Method(nn.Module, abc.ABC):
    """A trainable method: owns its model, its data and its losses.

    The trainer calls, for each step: ``get_train_batch`` → ``get_loss_dict`` (the sum is
    minimised) → optimiser step → callbacks; and ``get_eval_metrics`` periodically. Every
    random choice of a step must come from ``step`` (see ``engine.seeding``), so a resumed
    run repeats an uninterrupted one exactly. With several processes, each one's batch is
    its share of the global batch, and the trainer averages gradients across processes.
    """

    config: MethodConfig

    def __init__(self, config: MethodConfig, world: World, device: torch.device) -> None:
        super().__init__()
        self.config, self.world, self.device = config, world, device

    @abc.abstractmethod
    def get_param_groups(self) -> list[dict[str, Any]]:
        """Parameter groups: dicts with a unique "name", "params" and "lr" (and any Adam
        options); each group gets its own Adam optimiser."""

    @abc.abstractmethod
    def get_train_batch(self, step: int) -> Any:
        """This process's training batch for ``step``, a function of the step number alone."""

    @abc.abstractmethod
    def get_loss_dict(self, batch: Any, step: int) -> dict[str, Tensor]:
        """Scalar losses for ``batch``; the trainer minimises their sum."""

    @abc.abstractmethod
    def get_eval_metrics(self, step: int) -> dict[str, float]:
        """Metrics on held-out data (called on the main process only)."""

    def get_eval_report(self, step: int) -> dict[str, Any]:
        """The full evaluation written by ``sparse3d-eval run=...`` (e.g. per-view metrics);
        by default the periodic metrics."""
        return self.get_eval_metrics(step)

    def get_training_callbacks(self) -> list[TrainingCallback]:
        """Hooks around optimisation steps; none by default."""
        return []

    def get_viewer_content(self) -> ViewerContent:
        """What ``sparse3d-view`` draws; nothing by default."""
        return ViewerContent()

    def export(self, run_dir: Path) -> None:
        """Writes the trained result (e.g. a .ply) into ``run_dir``; nothing by default."""
