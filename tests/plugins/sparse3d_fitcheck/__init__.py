"""fitcheck: a test-only method, installed as a plugin through the ``sparse3d.methods``
entry-point group (tests put this folder on PYTHONPATH; its .dist-info announces it).

It fits a small MLP to a smooth function of 3D points drawn from the run seed, which is
enough real work to exercise seeding, batching across processes, checkpoints, resumption
and evaluation. It is not a user feature.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from sparse3d.engine.config import MethodConfig
from sparse3d.engine.distributed import World
from sparse3d.engine.method import Method
from sparse3d.engine.registry import MethodSpecification
from sparse3d.engine.seeding import derive_seed, step_generator

DATA_KEY = 7919  # separates the data seed from the step seeds


def target_function(x: Tensor) -> Tensor:
    """The function to fit: float [N, 3] -> float [N, 1]."""
    return (torch.sin(3 * x[:, :1]) * torch.cos(2 * x[:, 1:2]) + x[:, 2:3] ** 2)


@dataclass
class FitCheckModelConfig:
    hidden: int = 32
    """Hidden width of the MLP."""
    lr: float = 1e-2
    """Adam learning rate."""
    batch_size: int = 64
    """Global batch size (split evenly across processes)."""
    num_train: int = 1024
    """Training points."""
    num_eval: int = 256
    """Held-out points."""
    step_sleep: float = 0.0
    """Seconds to sleep per step, so tests can interrupt a run midway."""


class FitCheck(Method):
    def __init__(self, config: "FitCheckConfig", world: World, device: torch.device) -> None:
        super().__init__(config, world, device)
        m = config.model
        if m.batch_size % world.size:
            raise ValueError(f"model.batch_size={m.batch_size} must divide evenly over {world.size} processes")
        self.mlp = nn.Sequential(nn.Linear(3, m.hidden), nn.Tanh(), nn.Linear(m.hidden, m.hidden), nn.Tanh(), nn.Linear(m.hidden, 1))
        g = torch.Generator().manual_seed(derive_seed(config.trainer.seed, DATA_KEY))
        points = torch.rand(m.num_train + m.num_eval, 3, generator=g) * 2 - 1
        self.train_x, self.eval_x = points[: m.num_train], points[m.num_train :]

    def get_param_groups(self):
        return [{"name": "mlp", "params": list(self.mlp.parameters()), "lr": self.config.model.lr}]

    def get_train_batch(self, step: int) -> Tensor:
        m = self.config.model
        index = torch.randint(m.num_train, (m.batch_size,), generator=step_generator(self.config.trainer.seed, step))
        share = m.batch_size // self.world.size
        return self.train_x[index[self.world.rank * share : (self.world.rank + 1) * share]]

    def get_outputs(self, batch: Tensor, step: int) -> Tensor:
        if self.config.model.step_sleep:
            time.sleep(self.config.model.step_sleep)
        return self.mlp(batch)

    def get_loss_dict(self, outputs: Tensor, batch: Tensor, step: int) -> dict[str, Tensor]:
        return {"mse": (outputs - target_function(batch)).square().mean()}

    def get_eval_metrics(self, step: int) -> dict[str, float]:
        return {"eval_mse": (self.mlp(self.eval_x) - target_function(self.eval_x)).square().mean().item()}

    def export(self, run_dir: Path) -> None:
        torch.save(self.mlp.state_dict(), run_dir / "mlp.pt")


@dataclass
class FitCheckConfig(MethodConfig):
    _target = FitCheck
    model: FitCheckModelConfig = field(default_factory=FitCheckModelConfig)
    """The MLP and its data."""


spec = MethodSpecification(
    config_type=FitCheckConfig,
    description="Test-only: fit an MLP to a smooth 3D function.",
    defaults=Path(__file__).with_name("fitcheck.yaml"),
)
