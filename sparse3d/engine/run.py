"""Reopening a finished (or interrupted) run: its config, and its method at the newest checkpoint.

Run directories work from any working directory and after being moved or copied. When a run
starts, the trainer stores every path key of its config (``data``, and any other key typed
``Path``, except ``output``) as an absolute path, and records where the run was made under the
key ``origin`` of ``config.yaml``: the working directory (``cwd``) and the run directory
(``run_dir``), both absolute. Loading a run looks for each path, first found wins:

1. the stored path itself;
2. the same path relative to the run directory as it was when the run was made: a project
   tree moved or copied together with its data (``/old/proj/outputs/torus/splat`` and
   ``/old/proj/data/torus`` becoming ``/new/proj/...``) still finds its data;
3. for a relative path (a run written before paths were stored absolute, or an edited
   ``config.yaml``): the recorded working directory, the current one, then each folder
   above the run directory (a default run dir ``outputs/<data>/<method>`` sits two levels
   below the folder it was trained from).

When none exists, :class:`ConfigError` names every path tried, unless the caller gives a
stand-in for the key (``load_trained_method(..., data=OTHER)``: a run evaluated on other
data does not need its own).
"""

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any

import torch

from sparse3d.engine.checkpoint import list_checkpoints, load_checkpoint
from sparse3d.engine.config import (
    ConfigError,
    MethodConfig,
    config_keys,
    load_yaml,
    update_config,
)
from sparse3d.engine.distributed import World
from sparse3d.engine.method import Method
from sparse3d.engine.registry import discover_methods

ORIGIN_KEY = "origin"
"""The key of ``config.yaml`` that records where the run was made (``cwd``, ``run_dir``)."""


def absolute(path: Path | str, base: Path | str | None = None) -> Path:
    """``path`` made absolute against ``base`` (default: the working directory) and
    normalised (``..`` removed), without resolving symbolic links."""
    path = Path(path)
    if not path.is_absolute():
        path = Path(base if base is not None else os.getcwd()) / path
    return Path(os.path.normpath(path))


def path_keys(config: MethodConfig) -> list[str]:
    """The dotted keys of ``config`` typed ``Path`` (or ``Path | None``), except ``output``."""

    def is_path(hint: Any) -> bool:
        return hint is Path or Path in typing.get_args(hint)

    return [k for k, hint in config_keys(type(config)).items() if is_path(hint) and k != "output"]


def get_key(config: Any, dotted: str) -> Any:
    """The value of a dotted key of a config dataclass."""
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def replace_key(config: Any, dotted: str, value: Any) -> Any:
    """A copy of a config dataclass with the dotted key set to ``value``."""
    head, _, rest = dotted.partition(".")
    new = replace_key(getattr(config, head), rest, value) if rest else value
    return dataclasses.replace(config, **{head: new})


def with_absolute_paths(config: MethodConfig, base: Path | None = None) -> MethodConfig:
    """A copy of ``config`` whose path keys (:func:`path_keys`) are absolute, relative ones
    taken against ``base`` (default: the working directory)."""
    for key in path_keys(config):
        value = get_key(config, key)
        if value is not None:
            config = replace_key(config, key, absolute(value, base))
    return config


def run_origin(run_dir: Path) -> dict[str, str]:
    """What ``config.yaml`` records under :data:`ORIGIN_KEY` when a run starts."""
    return {"cwd": str(absolute(".")), "run_dir": str(absolute(run_dir))}


def candidate_paths(value: Path | str, run_dir: Path, origin: dict[str, str] | None) -> list[Path]:
    """Where a path stored in ``run_dir/config.yaml`` may be now, in the order to try."""
    value, run_now = Path(value), absolute(run_dir)
    origin = origin if isinstance(origin, dict) else {}
    found: list[Path] = []
    if value.is_absolute():
        found.append(absolute(value))
        if origin.get("run_dir"):
            found.append(absolute(os.path.relpath(value, origin["run_dir"]), run_now))
    else:
        if origin.get("cwd"):
            found.append(absolute(value, origin["cwd"]))
        found.append(absolute(value))
        found += [absolute(value, parent) for parent in run_now.parents]
    return list(dict.fromkeys(found))  # unique, in order


def locate_paths(config: MethodConfig, run_dir: Path, origin: dict[str, str] | None, source: str,
                 stand_ins: dict[str, Path] | None = None) -> MethodConfig:
    """A copy of a saved run's ``config`` whose path keys point at where the files are now.

    Args:
        stand_ins: dotted key -> the path to use for that key when none of its candidates
            exists.

    Raises:
        ConfigError: naming the key and every path tried, when one cannot be found (and
            has no stand-in).
    """
    stand_ins = stand_ins or {}
    for key in path_keys(config):
        value = get_key(config, key)
        if value is None:
            continue
        tried = candidate_paths(value, run_dir, origin)
        here = next((p for p in tried if p.exists()), stand_ins.get(key))
        if here is None:
            raise ConfigError(
                f"{source}: '{key}' {value} not found (tried {', '.join(map(str, tried))}); "
                "put the data back there, or copy it next to the run"
            )
        config = replace_key(config, key, here)
    return config


def load_run_config(run_dir: Path, data: Path | None = None) -> tuple[str, MethodConfig]:
    """The method name and resolved config saved in ``run_dir/config.yaml``, its paths
    located from where the run is now (see the module docstring) and ``output`` set to
    ``run_dir``; ``data``, if given, stands in for the run's own data when that cannot be
    found.

    Raises:
        ConfigError: if the file is missing or malformed, names an unknown method, or a
            path of the config (e.g. the data) cannot be found.
    """
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise ConfigError(f"{path}: not found; is {run_dir} a sparse3d run directory?")
    saved = load_yaml(path)
    name = saved.pop("method", None)
    origin = saved.pop(ORIGIN_KEY, None)
    methods = discover_methods()
    if name not in methods:
        raise ConfigError(f"{path}: 'method' is {name!r}; installed methods: {', '.join(methods)}")
    config = update_config(methods[name].config_type(), saved, source=str(path))
    config = dataclasses.replace(config, output=absolute(run_dir))  # where the run is now
    stand_ins = {"data": absolute(data)} if data is not None else None
    return name, locate_paths(config, run_dir, origin, source=str(path), stand_ins=stand_ins)


def load_trained_method(run_dir: Path, device: torch.device, data: Path | None = None) -> tuple[str, Method, int]:
    """The run's method with the weights of its newest checkpoint.

    Args:
        run_dir: the run directory.
        device: where the method goes.
        data: other data the method is to be evaluated on: the method is built on it when
            the run's own data cannot be found (e.g. a run copied without its training data).

    Returns:
        (method name, method in eval mode at the checkpoint's step (``update_to_step``),
        step of the checkpoint).

    Raises:
        ConfigError: the config cannot be read, its data cannot be found or read, or the
            run has no checkpoint.
    """
    name, config = load_run_config(run_dir, data)
    _newest_checkpoint(run_dir)  # before building the method: a run without one fails at once
    try:
        method = config.setup(world=World(), device=device)
    except FileNotFoundError as err:  # e.g. a file missing inside the data folder
        raise ConfigError(f"{Path(run_dir) / 'config.yaml'}: cannot rebuild the {name} method: {err}") from err
    return name, method, restore_newest(method, run_dir)


def restore_newest(method: Method, run_dir: Path) -> int:
    """Loads the run's newest checkpoint into ``method`` (built from the run's config),
    brings it to that step (``update_to_step``) in eval mode, and returns the step: a
    viewer following a run reloads the weights without rebuilding the method and its data.

    Raises:
        ConfigError: the run has no checkpoint.
    """
    step, path = _newest_checkpoint(run_dir)
    method.load_state_dict(load_checkpoint(path)["method"])
    method.update_to_step(step)
    method.eval()
    return step


def _newest_checkpoint(run_dir: Path) -> tuple[int, Path]:
    """(step, path) of the run's newest checkpoint; ConfigError when it has none."""
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise ConfigError(f"{Path(run_dir) / 'ckpt'}: no checkpoint; train the run first")
    return checkpoints[-1]
