"""One training run of a method inside a benchmark's process, as `sparse3d-train` would run
it (tools/bench_gaussianobject.py, tools/bench_strivec.py)."""

import sparse3d  # noqa: F401, I001  (first: it sets torch's OpenMP spin before torch loads)
import time
from pathlib import Path

import torch

from sparse3d.cli.overrides import parse_config
from sparse3d.engine.distributed import World
from sparse3d.engine.registry import discover_methods
from sparse3d.engine.trainer import Trainer


def train_and_report(method: str, data: Path, out: Path, overrides: list[str]) -> tuple[Trainer, dict, float]:
    """Trains ``method`` on ``data`` into ``out`` with ``key=value`` overrides (no progress
    bar); returns the trainer, the final step's eval metrics and the wall-clock minutes of
    the training with that evaluation."""
    spec = discover_methods()[method]
    assignments = dict(a.split("=", 1) for a in [f"data={data}", f"output={out}", "trainer.progress=false", *overrides])
    config = parse_config(spec.default_config(), assignments, f"bench {method}", spec.description, False)
    start = time.perf_counter()
    trainer = Trainer(config, method, out, World())
    metrics = trainer.train()
    if metrics.get("step") != config.trainer.max_steps:  # the schedule did not evaluate the last step
        with torch.no_grad():
            metrics = trainer.method.get_eval_metrics(config.trainer.max_steps)
    return trainer, metrics, (time.perf_counter() - start) / 60
