"""The training loop: seeded, resumable, checkpointed, optionally multi-process.

A run directory holds ``config.yaml``, ``ckpt/step-XXXXXX.pt`` and ``metrics.json``
(plus what the method exports, and ``tensorboard/`` when the optional ``tensorboard``
package is installed). Running the same command again resumes from the newest checkpoint
and ends exactly where an uninterrupted run would have: metrics.json too, but for the
wall-clock timing each entry carries under ``"time"`` (see :mod:`sparse3d.engine.logging`).

The run's files are written only once training can start (the data loaded and the method
built), so a failed start leaves nothing behind; a directory with a ``config.yaml`` but no
checkpoint is not a run to protect, and a new run may take it over. ``config.yaml`` stores
the data path (every path key) absolute, plus where the run was made (see
:mod:`sparse3d.engine.run`), so the run directory works from anywhere and after a move.

SIGINT (Ctrl-C) or SIGTERM during training finishes the current step, writes its
checkpoint, and raises :class:`TrainingInterrupted`; the same command resumes from there,
exactly. With several processes (torchrun forwards the signal to every worker) the
processes agree on the step to stop after, through the collective every step already
makes, and the main process writes the checkpoint. A second signal stops at once
(KeyboardInterrupt), without a checkpoint.
"""

import dataclasses
import math
import os
import signal
import sys
import threading
import time
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
from sparse3d.engine.logging import (
    TIME_KEY,
    StepTimer,
    TensorBoardLog,
    previous_elapsed,
    without_timing,
)
from sparse3d.engine.method import Method, StepOutputs
from sparse3d.engine.run import (
    ORIGIN_KEY,
    absolute,
    path_keys,
    run_origin,
    with_absolute_paths,
)
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


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after a completed step, whose checkpoint was written.

    Attributes:
        step: completed steps, saved in ``checkpoint``.
        checkpoint: the checkpoint written (None on processes other than the main one).
        signal_name: "SIGINT" or "SIGTERM".
    """

    def __init__(self, step: int, checkpoint: Path | None, signal_name: str) -> None:
        super().__init__(f"interrupted by {signal_name} after step {step}")
        self.step, self.checkpoint, self.signal_name = step, checkpoint, signal_name


class _StopRequest:
    """Catches SIGINT/SIGTERM while active: the first sets ``signum``, a second raises
    KeyboardInterrupt. Only the main thread can install handlers; elsewhere it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum


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
        # The run works from any directory (see engine/run.py), and a method finds its run
        # directory as config.output.
        config = dataclasses.replace(with_absolute_paths(config), output=absolute(run_dir))
        self.config, self.method_name, self.run_dir, self.world = config, method_name, Path(run_dir), world
        self.device = resolve_device(config.trainer.device)
        self.history: dict[str, list[dict[str, float]]] = {"train": [], "eval": []}
        self._check_config()
        config._target.prepare(config, world)
        torch.manual_seed(config.trainer.seed)  # identical initial parameters on every process
        self.method: Method = config.setup(world=world, device=self.device)
        self.start_step, optimizer_states = self._restore_method()
        self.optimizers = optimizers_for(self.method.get_param_groups())
        for name, state in (optimizer_states or {}).items():
            self.optimizers[name].load_state_dict(state)
        self.method.update_to_step(self.start_step)  # schedules match the restored weights
        self.callbacks = self.method.get_training_callbacks()
        self._stop: _StopRequest | None = None
        self.pause = threading.Event()
        """Set (e.g. by a viewer in this process) to pause after the current step; cleared to resume."""
        self._timer = StepTimer(self.start_step)  # replaced when train() starts
        self._tensorboard: TensorBoardLog | None = None
        if self.world.is_main:  # training can start: only now the directory becomes a run
            self._write_config()

    def train(self) -> dict[str, float]:
        """Runs the remaining steps; returns the final evaluation metrics.

        Raises:
            TrainingInterrupted: on SIGINT/SIGTERM, after the current step and its checkpoint.
        """
        trainer = self.config.trainer
        if self.start_step >= trainer.max_steps and self.history["eval"]:
            return without_timing(self.history["eval"][-1])
        # The timing keeps counting across resumptions; TensorBoard is the main process's,
        # like metrics.json.
        self._timer = StepTimer(self.start_step, previous_elapsed(self.run_dir, self.history))
        self._tensorboard = (
            TensorBoardLog(self.run_dir / "tensorboard", purge_step=self.start_step + 1 if self.start_step else None)
            if self.world.is_main else None
        )
        with _StopRequest() as self._stop:
            try:
                return self._train_loop()
            finally:
                self._stop = None
                if self._tensorboard is not None:
                    self._tensorboard.close()

    def _train_loop(self) -> dict[str, float]:
        trainer = self.config.trainer
        bar = tqdm(
            total=trainer.max_steps,
            initial=self.start_step,
            disable=not (trainer.progress and self.world.is_main),
            desc=f"{self.method_name} {self.run_dir}",
            dynamic_ncols=True,
            mininterval=0.1 if sys.stderr.isatty() else 30.0,  # keep logs short when not a terminal
        )
        self._timer.start()
        for step in range(self.start_step, trainer.max_steps):
            losses, stop_signal = self._train_step(step)
            done = step + 1
            last = done == trainer.max_steps
            if done % trainer.log_every == 0 or last:
                self._log("train", {"step": done, **losses})
                bar.set_postfix(loss=f"{losses['loss']:.4g}")
            if _due(done, trainer.eval_every, last) and self.world.is_main:
                self.method.eval()
                self.method.update_to_step(done)
                with torch.no_grad():
                    metrics = {"step": done, **self.method.get_eval_metrics(done)}
                self.method.train()
                self._log("eval", metrics)
                bar.write(_format_metrics(metrics))
            saved = None
            if self.world.is_main:
                if _due(done, trainer.ckpt_every, last) or stop_signal:
                    saved = self._save(done)
                if done % trainer.log_every == 0 or last or stop_signal:
                    write_json_atomic(self.run_dir / "metrics.json", self.history)
                    self._tensorboard.flush()
            bar.update(1)
            if self.pause.is_set() and not last and not stop_signal:
                # The paused state goes to disk first: a viewer shows it, and Ctrl-C keeps it.
                if saved is None:
                    saved = self._save(done)
                    write_json_atomic(self.run_dir / "metrics.json", self.history)
                stop_signal = self._wait_while_paused()
            if stop_signal and not last:
                bar.close()
                raise TrainingInterrupted(done, saved, signal.Signals(stop_signal).name)
        bar.close()
        if self.world.is_main:
            self.method.export(self.run_dir)
        return without_timing(self.history["eval"][-1]) if self.history["eval"] else {}

    def _wait_while_paused(self) -> int:
        """Waits until :attr:`pause` is cleared or a stop signal comes; returns the signal
        number (0 when resumed). The time waited does not count as training time."""
        started = time.perf_counter()
        while self.pause.is_set() and not self._signal_received():
            time.sleep(0.05)
        self._timer.exclude(time.perf_counter() - started)
        return self._signal_received()

    def _signal_received(self) -> int:
        """The number of the stop signal this process received during train() (0: none)."""
        return self._stop.signum if self._stop is not None and self._stop.signum is not None else 0

    def _log(self, group: str, entry: dict[str, float]) -> None:
        """Appends an entry, with its timing, to the history (metrics.json) and TensorBoard."""
        entry = {**entry, TIME_KEY: self._timer.lap(int(entry["step"]))}
        self.history[group].append(entry)
        if self._tensorboard is not None:
            self._tensorboard.add_entry(group, entry)

    def _train_step(self, step: int) -> tuple[dict[str, float], int]:
        """One optimisation step; returns its (process-averaged) losses and the signal number
        that asks to stop after it (0: none), agreed by all processes."""
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
        produced = StepOutputs(batch, outputs, loss_dict)
        self._run_callbacks("after_backward", step, produced)
        for optimizer in self.optimizers.values():
            optimizer.step()
        self._run_callbacks("after_step", step, produced)
        values = torch.stack([loss.detach(), *(v.detach() for v in loss_dict.values())]).float()
        # The stop request rides on the collective that averages the losses, so every process
        # learns after the same step that one of them was signalled (mean > 0).
        signum = self._signal_received()
        stop = torch.tensor([float(signum)], device=values.device)
        all_reduce_mean_([values, stop], self.world)
        stop_signal = signum or (int(signal.SIGTERM) if stop.item() > 0 else 0)
        return dict(zip(["loss", *loss_dict], values.tolist())), stop_signal

    def _run_callbacks(self, where: str, step: int, produced: StepOutputs | None) -> None:
        for callback in self.callbacks:
            if callback.where == where and step % callback.every == 0:
                callback.fn(step, self.optimizers, produced)

    def _save(self, step: int) -> Path:
        state = {
            "step": step,
            "method": self.method.state_dict(),
            "optimizers": {name: o.state_dict() for name, o in self.optimizers.items()},
            "history": self.history,
        }
        return save_checkpoint(self.run_dir, step, state, keep=self.config.trainer.keep_ckpts)

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

    def _current_config(self) -> dict[str, Any]:
        return {"method": self.method_name, **config_to_dict(self.config)}

    def _check_config(self) -> None:
        """Refuses a run directory that holds checkpoints of a different config. A directory
        with a config.yaml but no checkpoint (a start that failed) may be taken over."""
        path = self.run_dir / "config.yaml"
        if not path.exists() or not list_checkpoints(self.run_dir):
            return
        saved = load_yaml(path)
        origin = saved.pop(ORIGIN_KEY, None)
        current = self._current_config()
        moved = set(path_keys(self.config))  # compared as locations, not strings
        changed = sorted(
            k for k in _diff_keys(saved, current)
            if k not in RESUMABLE_KEYS | self.config.run_keys
            and not (k in moved and _same_location(_get(saved, k), _get(current, k), origin, self.run_dir))
        )
        if changed:
            raise RunDirError(
                f"{self.run_dir} holds a run with a different config (keys {', '.join(changed)}); "
                "choose another output=DIR, or delete the directory to start over"
            )

    def _write_config(self) -> None:
        current = {**self._current_config(), ORIGIN_KEY: run_origin(self.run_dir)}
        write_text_atomic(self.run_dir / "config.yaml", yaml.safe_dump(current, sort_keys=False))


def train_stage(config: MethodConfig, run_dir: Path, world: World, name: str) -> None:
    """Trains (or resumes, or finds finished) the engine run of one stage of a method that
    runs other engine runs first (e.g. GaussianObject's coarse model, Strivec's coarse
    grid), in ``run_dir``."""
    config = dataclasses.replace(config, output=run_dir)
    Trainer(config, name, run_dir, world).train()


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


def _get(values: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        values = values.get(part) if isinstance(values, dict) else None
    return values


def _same_location(saved: Any, current: Any, origin: Any, run_dir: Path) -> bool:
    """Whether a path saved in config.yaml names the data that ``current`` names, given
    where the run directory is now: the same absolute path, the same place relative to the
    run directory (the tree was moved), or (a run saved before paths were stored absolute)
    the same path relative to the working directory."""
    if not isinstance(saved, str) or not isinstance(current, str):
        return False
    if absolute(saved) == absolute(current):
        return True
    if isinstance(origin, dict) and origin.get("run_dir") and os.path.isabs(saved):
        return os.path.relpath(saved, origin["run_dir"]) == os.path.relpath(current, absolute(run_dir))
    return False


def _format_metrics(metrics: dict[str, float]) -> str:
    parts = [f"{k}={v:.5g}" if isinstance(v, float) and math.isfinite(v) else f"{k}={v}" for k, v in metrics.items()]
    return "eval " + " ".join(parts)
