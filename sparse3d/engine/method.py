"""The contract between a method and the engine (nerfstudio's model contract, condensed).

Besides training (``get_param_groups``, ``get_train_batch``, ``get_outputs``,
``get_loss_dict``, callbacks) and evaluation, every method answers the two questions that
the viewer, the evaluation and the exporters share: what it sees from a camera
(``get_outputs_for_camera``) and what there is to draw (``get_scene_layers``).

``get_eval_report`` evaluates on the method's own held-out data, or, given an
:class:`EvalSource`, on other data (``sparse3d-eval run=RUN data=OTHER ...``) for the methods
that can (the LiDAR detectors: any nuScenes v1.0 database and split).
"""

import abc
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from torch import Tensor, nn

from sparse3d.engine.config import MethodConfig
from sparse3d.engine.distributed import World
from sparse3d.engine.scene import SceneLayer
from sparse3d.geometry.cameras import Cameras


@dataclass(frozen=True)
class EvalSource:
    """Data to evaluate a trained method on instead of its own held-out data.

    Each field left None takes the run's own value (its data, its table version, its
    held-out split), so ``EvalSource(split="train")`` scores the run's own training split.
    """

    data: Path | None = None
    """The dataroot (for detectors a nuScenes-format one); None: the run's ``data``."""
    version: str | None = None
    """The database version (for nuScenes the table folder, e.g. ``v1.0-mini``); None: the run's."""
    split: str | None = None
    """The split to evaluate; None: the run's held-out split."""
    out: Path | None = None
    """Folder of the evaluation's files; None: ``RUN_DIR/eval_<version>_<split>``."""

    def resolved(self, data: Path, version: str, split: str, run_dir: Path) -> "EvalSource":
        """A copy with every field set: the None ones from the run's ``data``, ``version`` and
        ``split``, and ``out`` from ``run_dir``."""
        version, split = self.version or version, self.split or split
        out = self.out if self.out is not None else Path(run_dir) / f"eval_{version}_{split}"
        return EvalSource(Path(self.data if self.data is not None else data), version, split, Path(out))

    def as_dict(self) -> dict[str, str | None]:
        """The fields as JSON values (paths as strings): a report's "source" entry."""
        return {k: None if v is None else str(v) for k, v in dataclasses.asdict(self).items()}


def require_own_data(method: "Method", source: EvalSource | None) -> None:
    """For the methods that evaluate on their own held-out data only.

    Raises:
        NotImplementedError: ``source`` is given; the message names the method.
    """
    if source is not None:
        raise NotImplementedError(
            f"{type(method).__name__} evaluates on its own held-out data only; it cannot be evaluated on "
            "other data (drop data=, version=, split= and out=)"
        )


@dataclass(frozen=True)
class StepOutputs:
    """What one training step produced: what an "after_step" callback reads."""

    batch: Any
    """The step's batch, from ``get_train_batch(step)``."""
    outputs: Any
    """The forward pass, from ``get_outputs(batch, step)`` (e.g. renders and rasterizer
    meta); its tensors hold the gradients of the step's backward pass."""
    losses: dict[str, Tensor]
    """The scalar losses, from ``get_loss_dict(outputs, batch, step)``."""


@dataclass
class TrainingCallback:
    """A hook the trainer calls around optimisation steps (e.g. densification)."""

    where: Literal["before_step", "after_backward", "after_step"]
    """Before the forward pass; after the backward pass, when the gradients are complete
    (averaged across processes) and the optimisers have not stepped yet (e.g. gradient
    clipping); or after the optimiser step."""
    fn: Callable[[int, dict[str, torch.optim.Optimizer], StepOutputs | None], None]
    """Called with the step number, the optimisers (one per parameter group, by name), and
    what the step produced: None before the step, a :class:`StepOutputs` after the
    backward pass and after the step."""
    every: int = 1
    """Call on steps divisible by this."""


class Method(nn.Module, abc.ABC):
    """A trainable method: owns its model, its data and its losses.

    The trainer calls, for each step: ``update_to_step`` → "before_step" callbacks →
    ``get_train_batch`` → ``get_outputs`` → ``get_loss_dict`` (the sum is minimised) →
    backward → "after_backward" callbacks → optimiser step → "after_step" callbacks with the step's :class:`StepOutputs`; and
    ``get_eval_metrics`` periodically. Every random choice of a step must come from
    ``step`` (see ``engine.seeding``), so a resumed run repeats an uninterrupted one
    exactly; nothing a step computes is kept on ``self`` for later hooks, which receive it
    instead. With several processes, each one's batch is its share of the global batch,
    and the trainer averages gradients across processes.
    """

    config: MethodConfig

    def __init__(self, config: MethodConfig, world: World, device: torch.device) -> None:
        super().__init__()
        self.config, self.world, self.device = config, world, device

    @classmethod
    def prepare(cls, config: MethodConfig, world: World) -> None:
        """Produces what must exist before the method can be built, in its run directory
        ``config.output`` (e.g. GaussianObject's visual hull, coarse model and repair
        model), resuming whatever an interrupted call left; nothing by default. The trainer
        calls it on every start, before building the method, on every process."""

    @abc.abstractmethod
    def get_param_groups(self) -> list[dict[str, Any]]:
        """Parameter groups: dicts with a unique "name", "params" and "lr" (and any Adam
        options); each group gets its own Adam optimiser."""

    @abc.abstractmethod
    def get_train_batch(self, step: int) -> Any:
        """This process's training batch for ``step``, a function of the step number alone."""

    @abc.abstractmethod
    def get_outputs(self, batch: Any, step: int) -> Any:
        """The forward pass on ``batch``: whatever ``get_loss_dict`` and the callbacks read
        (a method-defined value, e.g. a dataclass of renders and rasterizer meta)."""

    @abc.abstractmethod
    def get_loss_dict(self, outputs: Any, batch: Any, step: int) -> dict[str, Tensor]:
        """Scalar losses of ``outputs`` (from ``get_outputs(batch, step)``); the trainer
        minimises their sum."""

    @abc.abstractmethod
    def get_eval_metrics(self, step: int) -> dict[str, float]:
        """Metrics on held-out data after ``step`` steps (called on the main process only)."""

    def get_eval_report(self, step: int, source: EvalSource | None = None) -> dict[str, Any]:
        """The full evaluation written by ``sparse3d-eval run=...`` (e.g. per-view metrics);
        by default the periodic metrics.

        Args:
            step: the step of the loaded weights.
            source: other data to evaluate on (``sparse3d-eval run=... data=...``); None:
                the method's own held-out data. A method that accepts it writes its files
                into ``source.resolved(...).out`` and returns the resolved source under the
                report's key "source" (:meth:`EvalSource.as_dict`); ``sparse3d-eval``
                writes the report into that folder too (``eval.json``).

        Raises:
            NotImplementedError: ``source`` given to a method that evaluates on its own
                held-out data only (the default; see :func:`require_own_data`).
        """
        require_own_data(self, source)
        return self.get_eval_metrics(step)

    def update_to_step(self, step: int) -> None:
        """Sets whatever follows a schedule (e.g. the active SH degree) to its value after
        ``step`` steps. The trainer calls it before every step and before evaluating, and
        ``load_trained_method`` after loading a checkpoint; nothing by default."""

    def get_training_callbacks(self) -> list[TrainingCallback]:
        """Hooks around optimisation steps; none by default."""
        return []

    def get_outputs_for_camera(self, camera: Cameras) -> dict[str, Tensor]:
        """What the method sees from one arbitrary camera (viewer, evaluation, exporters).

        Args:
            camera: a batch of one camera (``len(camera) == 1``), any image size.

        Returns:
            For renderers "rgb" float [H, W, 3] in [0, 1], "alpha" float [H, W, 1] and
            "depth" float [H, W, 1] (camera-frame z), plus any method-specific channel;
            detectors return the LiDAR points and boxes seen by the camera instead.

        Raises:
            NotImplementedError: for methods that cannot be viewed from a camera (default).
        """
        raise NotImplementedError(
            f"{type(self).__name__} cannot be viewed from a camera: it does not implement get_outputs_for_camera"
        )

    def get_scene_layers(self) -> list[SceneLayer]:
        """What ``sparse3d-view`` draws (engine.scene types, detached); nothing by default."""
        return []

    def export(self, run_dir: Path) -> None:
        """Writes the trained result (e.g. a .ply) into ``run_dir``; nothing by default."""

    def summary(self, run_dir: Path) -> list[str]:
        """Lines ``sparse3d-train`` prints when the run in ``run_dir`` has finished (after
        ``export``): what it wrote and its figures beyond the final metrics; none by default."""
        return []
