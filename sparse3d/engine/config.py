"""Typed run configs: dataclasses whose default values live in YAML files.

Every method's config subclasses :class:`MethodConfig`. Values come, in order, from the
dataclass defaults, the method's ``configs/<method>.yaml`` and the command line; the
resolved config is saved as ``config.yaml`` in the run directory.
"""

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from sparse3d.io.read import read_yaml


class ConfigError(ValueError):
    """A config value or key is invalid; the message names where it came from."""


@dataclass
class TrainerConfig:
    """How the engine runs the optimisation loop."""

    max_steps: int = 1000
    """Number of optimisation steps."""
    eval_every: int = 500
    """Evaluate every this many steps (and after the last step); 0 evaluates only at the end."""
    ckpt_every: int = 500
    """Write a checkpoint every this many steps (and after the last step); 0 only at the end."""
    keep_ckpts: int = 2
    """How many of the most recent checkpoints to keep (0 keeps all)."""
    log_every: int = 10
    """Record the training losses in metrics.json every this many steps."""
    seed: int = 0
    """Seed of every random choice of the run (initialisation, batches)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train; "auto" takes CUDA when it is available."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class MethodConfig:
    """Keys shared by every method. Subclasses add the method's own sections (model, ...)
    and set ``_target`` to the method class that the config builds."""

    _target: ClassVar[type]
    """The method class this config builds (set by each subclass)."""
    data: Path | None = None
    """Dataset directory (or file) to train on."""
    output: Path | None = None
    """Run directory; default outputs/<data name>/<method>. Rerunning a command resumes it."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Optimisation loop."""

    def setup(self, **kwargs):
        """Builds the method this config describes."""
        return self._target(self, **kwargs)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain YAML-ready values of a config dataclass (paths as strings, tuples as lists)."""
    return {f.name: _plain(getattr(config, f.name)) for f in _public_fields(config)}


def update_config(config: Any, values: dict[str, Any], source: str) -> Any:
    """Returns a copy of ``config`` with nested ``values`` applied, checking keys and types.

    Raises:
        ConfigError: for an unknown key (with the closest valid keys), a value of the wrong
            type, or values that the config's own checks reject; the message starts with
            ``source`` (a file name, or "command line").
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(values).__name__}")
    return _update(config, values, source, prefix="")


def config_keys(config_type: type) -> dict[str, Any]:
    """All dotted keys of a config dataclass with their annotated types (nested sections flattened)."""
    keys: dict[str, Any] = {}
    hints = typing.get_type_hints(config_type)
    for f in _public_fields(config_type):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            keys.update({f"{f.name}.{k}": t for k, t in config_keys(hint).items()})
        else:
            keys[f.name] = hint
    return keys


def unknown_key_message(key: str, valid: list[str], source: str) -> str:
    """An error message for an unknown key that suggests the closest valid ones."""
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; valid keys: {', '.join(sorted(valid))}"
    return f"{source}: unknown key '{key}'{hint}"


def load_yaml(path: Path) -> dict[str, Any]:
    """Reads a YAML mapping of config keys (an empty file is an empty mapping).

    Raises:
        ConfigError: naming the file, when it is missing, not valid YAML or not a mapping.
    """
    data = read_yaml(path, error=ConfigError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def _public_fields(config: Any) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(config) if not f.name.startswith("_")]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return config_to_dict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _update(config: Any, values: dict[str, Any], source: str, prefix: str) -> Any:
    hints = typing.get_type_hints(type(config))
    fields = {f.name: f for f in _public_fields(config)}
    changes = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            valid = [f"{prefix}{k}" for k in config_keys(type(config))]
            raise ConfigError(unknown_key_message(dotted, valid, source))
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{dotted}' is a section; expected a mapping, got {value!r}")
            changes[key] = _update(current, value, source, prefix=f"{dotted}.")
        else:
            changes[key] = coerce_value(value, hints[key], f"{source}: '{dotted}'")
    try:
        return dataclasses.replace(config, **changes)
    except ConfigError:
        raise
    except ValueError as err:  # the config's own checks (__post_init__) reject the combination
        raise ConfigError(f"{source}: {err}") from err


def coerce_value(value: Any, hint: Any, where: str) -> Any:
    """Converts a YAML value to the annotated type ``hint``, or raises ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce_value(value, option, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: expected {_type_name(hint)}, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        items = [coerce_value(v, item, where) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is Path:
        if isinstance(value, str):
            return Path(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{where}: expected {_type_name(hint)}, got {value!r}")


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
