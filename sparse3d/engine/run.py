"""Reopening a finished (or interrupted) run: its config, and its method at the newest checkpoint."""

from pathlib import Path

import torch

from sparse3d.engine.checkpoint import list_checkpoints, load_checkpoint
from sparse3d.engine.config import ConfigError, MethodConfig, load_yaml, update_config
from sparse3d.engine.distributed import World
from sparse3d.engine.method import Method
from sparse3d.engine.registry import discover_methods


def load_run_config(run_dir: Path) -> tuple[str, MethodConfig]:
    """The method name and resolved config saved in ``run_dir/config.yaml``.

    Raises:
        ConfigError: if the file is missing or malformed, or names an unknown method.
    """
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise ConfigError(f"{path}: not found; is {run_dir} a sparse3d run directory?")
    saved = load_yaml(path)
    name = saved.pop("method", None)
    methods = discover_methods()
    if name not in methods:
        raise ConfigError(f"{path}: 'method' is {name!r}; installed methods: {', '.join(methods)}")
    return name, update_config(methods[name].config_type(), saved, source=str(path))


def load_trained_method(run_dir: Path, device: torch.device) -> tuple[str, Method, int]:
    """The run's method with the weights of its newest checkpoint.

    Returns:
        (method name, method in eval mode at the checkpoint's step (``update_to_step``),
        step of the checkpoint).
    """
    name, config = load_run_config(run_dir)
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise ConfigError(f"{Path(run_dir) / 'ckpt'}: no checkpoint; train the run first")
    step, path = checkpoints[-1]
    method = config.setup(world=World(), device=device)
    method.load_state_dict(load_checkpoint(path)["method"])
    method.update_to_step(step)
    return name, method.eval(), step
