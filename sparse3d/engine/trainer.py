"""The training loop: seeded, resumable, checkpointed, optionally multi-process.

A run directory holds ``config.yaml``, ``ckpt/step-XXXXXX.pt`` and ``metrics.json``
(plus what the method exports). Running the same command again resumes from the newest
checkpoint and ends exactly where an uninterrupted run would have.
"""

import math
import sys
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from sparse3d.engine.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from sparse3d.engine.config import MethodConfig, config_to_dict, load_yaml
from sparse3d.engine.distributed import World, all_reduce_mean_
from sparse3d.engine.method import Method, StepOutputs
from sparse3d.io.atomic import write_json_atomic, write_text_atomic

# Keys that may change between a run and its resumption: where the run lives and how it is
# watched, but nothing that changes what is computed.
RESUMABLE_KEYS = {
    "output",
    "trainer.max_steps",
    "trainer.progress",
    "trainer.eval_every",
    "trainer.keep_ckpts",
    "trainer.device",
}


class RunDirError(RuntimeError):
    """The run directory belongs to a different run."""


def resolve_device(name: str) -> torch.device:
    """The device a TrainerConfig.device name stands for."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("trainer.device=cuda, but this torch build or machine has no CUDA")
    return torch.device(name)


def default_run_dir(config: MethodConfig, method_name: str) -> Path:
    """outputs/<data name>/<method>: stable, so that rerunning a command resumes it."""
    data_name = config.data.stem if config.data is not None else "default"
    return Path("outputs") / data_name / method_name


class Trainer:
    """Trains one method in one run directory.

    Args:
        config: the resolved config of the method.
        method_name: the registry name (recorded in config.yaml).
        run_dir: where config, checkpoints and metrics go.
        world: this process's place among the training processes.
    """

    def __init__(self, config: MethodConfig, method_name: str, run_dir: Path, world: World) -> None:
        self.config, self.method_name, self.run_dir, self.world = config, method_name, Path(run_dir), world
        self.device = resolve_device(config.trainer.device)
        self.history: dict[str, list[dict[str, float]]] = {"train": [], "eval": []}
        self._write_or_check_config()
        torch.manual_seed(config.trainer.seed)  # identical initial parameters on every process
        self.method: Method = config.setup(world=world, device=self.device)
        self.start_step, optimizer_states = self._restore_method()
        self.optimizers = optimizers_for(self.method.get_param_groups())
        for name, state in (optimizer_states or {}).items():
            self.optimizers[name].load_state_dict(state)
        self.method.update_to_step(self.start_step)  # schedules match the restored weights
        self.callbacks = self.method.get_training_callbacks()

    def train(self) -> dict[str, float]:
        """Runs the remaining steps; returns the final evaluation metrics."""
        trainer = self.config.trainer
        if self.start_step >= trainer.max_steps and self.history["eval"]:
            return self.history["eval"][-1]
        bar = tqdm(
            total=trainer.max_steps,
            initial=self.start_step,
            disable=not (trainer.progress and self.world.is_main),
            desc=f"{self.method_name} {self.run_dir}",
            dynamic_ncols=True,
            mininterval=0.1 if sys.stderr.isatty() else 30.0,  # keep logs short when not a terminal
        )
        for step in range(self.start_step, trainer.max_steps):
            losses = self._train_step(step)
            done = step + 1
            last = done == trainer.max_steps
            if done % trainer.log_every == 0 or last:
                self.history["train"].append({"step": done, **losses})
                bar.set_postfix(loss=f"{losses['loss']:.4g}")
            if _due(done, trainer.eval_every, last) and self.world.is_main:
                self.method.eval()
                self.method.update_to_step(done)
                with torch.no_grad():
                    metrics = {"step": done, **self.method.get_eval_metrics(done)}
                self.method.train()
                self.history["eval"].append(metrics)
                bar.write(_format_metrics(metrics))
            if self.world.is_main:
                if _due(done, trainer.ckpt_every, last):
                    self._save(done)
                if done % trainer.log_every == 0 or last:
                    write_json_atomic(self.run_dir / "metrics.json", self.history)
            bar.update(1)
        bar.close()
        if self.world.is_main:
            self.method.export(self.run_dir)
        return self.history["eval"][-1] if self.history["eval"] else {}

    def _train_step(self, step: int) -> dict[str, float]:
        self.method.update_to_step(step)
        self._run_callbacks("before_step", step, None)
        batch = self.method.get_train_batch(step)
        outputs = self.method.get_outputs(batch, step)
        loss_dict = self.method.get_loss_dict(outputs, batch, step)
        loss = sum(loss_dict.values())
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.world.size > 1:
            params = [p for o in self.optimizers.values() for g in o.param_groups for p in g["params"]]
            for p in params:  # every process must send the same tensors to the collective
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            all_reduce_mean_([p.grad for p in params], self.world)
        for optimizer in self.optimizers.values():
            optimizer.step()
        self._run_callbacks("after_step", step, StepOutputs(batch, outputs, loss_dict))
        values = torch.stack([loss.detach(), *(v.detach() for v in loss_dict.values())]).float()
        all_reduce_mean_([values], self.world)
        return dict(zip(["loss", *loss_dict], values.tolist()))

    def _run_callbacks(self, where: str, step: int, produced: StepOutputs | None) -> None:
        for callback in self.callbacks:
            if callback.where == where and step % callback.every == 0:
                callback.fn(step, self.optimizers, produced)

    def _save(self, step: int) -> None:
        state = {
            "step": step,
            "method": self.method.state_dict(),
            "optimizers": {name: o.state_dict() for name, o in self.optimizers.items()},
            "history": self.history,
        }
        save_checkpoint(self.run_dir, step, state, keep=self.config.trainer.keep_ckpts)

    def _restore_method(self) -> tuple[int, dict[str, Any] | None]:
        checkpoints = list_checkpoints(self.run_dir)
        if not checkpoints:
            return 0, None
        step, path = checkpoints[-1]
        state = load_checkpoint(path)
        self.method.load_state_dict(state["method"])
        self.history = state["history"]
        if self.world.is_main:
            print(f"sparse3d: resuming {self.run_dir} from {path.name} (step {step})")
        return step, state["optimizers"]

    def _write_or_check_config(self) -> None:
        path = self.run_dir / "config.yaml"
        current = {"method": self.method_name, **config_to_dict(self.config)}
        if path.exists():
            saved = load_yaml(path)
            changed = sorted(k for k in _diff_keys(saved, current) if k not in RESUMABLE_KEYS)
            if changed:
                raise RunDirError(
                    f"{self.run_dir} holds a run with a different config (keys {', '.join(changed)}); "
                    "choose another output=DIR, or delete the directory to start over"
                )
        if self.world.is_main:
            write_text_atomic(path, yaml.safe_dump(current, sort_keys=False))


def optimizers_for(param_groups: list[dict[str, Any]]) -> dict[str, torch.optim.Optimizer]:
    """One Adam per named parameter group, so that densification can replace a group's
    tensors together with their optimizer state."""
    names = [g["name"] for g in param_groups]
    if len(set(names)) != len(names):
        raise ValueError(f"parameter group names must be unique, got {names}")
    return {g["name"]: torch.optim.Adam([g]) for g in param_groups}


def _due(done: int, every: int, last: bool) -> bool:
    return last or (every > 0 and done % every == 0)


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in a.keys() | b.keys():
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += _diff_keys(va, vb, f"{prefix}{k}.")
        elif va != vb:
            keys.append(f"{prefix}{k}")
    return keys


def _format_metrics(metrics: dict[str, float]) -> str:
    parts = [f"{k}={v:.5g}" if isinstance(v, float) and math.isfinite(v) else f"{k}={v}" for k, v in metrics.items()]
    return "eval " + " ".join(parts)
