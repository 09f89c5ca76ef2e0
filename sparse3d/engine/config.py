"""Typed run configs: dataclasses whose default values live in YAML files.

Every method's config subclasses :class:`MethodConfig`. Values come, in order, from the
dataclass defaults, the method's ``configs/<method>.yaml`` and the command line; the
resolved config is saved as ``config.yaml`` in the run directory.

A numeric field declares its allowed values once, as field metadata::

    max_steps: int = field(default=1000, metadata=at_least(1))
    init_opacity: float = field(default=0.1, metadata=between(0, 1, closed=False))

:func:`update_config` (YAML files and the command line alike) rejects a value outside
the range with a :class:`ConfigError` naming the source, the dotted key and the range;
:func:`check_ranges` does the same for a config built in code (call it in
``__post_init__``).
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


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric config field (each item of a list or tuple field).

    ``None`` leaves that side open-ended; ``low_open`` / ``high_open`` exclude the bound.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


RANGE_KEY = "range"
"""The field-metadata key under which a :class:`Range` is declared."""


def at_least(low: float) -> dict[str, Range]:
    """Field metadata: values >= ``low`` (counts, step numbers, seeds)."""
    return {RANGE_KEY: Range(low=low)}


def positive() -> dict[str, Range]:
    """Field metadata: values > 0 (learning rates, scales, sizes)."""
    return {RANGE_KEY: Range(low=0, low_open=True)}


def between(low: float, high: float, closed: bool = True) -> dict[str, Range]:
    """Field metadata: values in [low, high] (``closed=False``: in (low, high))."""
    return {RANGE_KEY: Range(low=low, high=high, low_open=not closed, high_open=not closed)}


def check_ranges(config: Any) -> None:
    """Checks the declared ranges of ``config``'s own fields (not nested sections).

    For ``__post_init__``: a config built in code is held to the same ranges as one read
    from YAML or the command line.

    Raises:
        ValueError: naming the config class, the field and its range.
    """
    name = type(config).__name__
    for f in _public_fields(config):
        bounds = f.metadata.get(RANGE_KEY)
        if bounds is not None:
            _check_range(getattr(config, f.name), bounds, f"{name}.{f.name}", ValueError)


def _check_range(value: Any, bounds: Range, where: str, error: type[Exception]) -> None:
    values = value if isinstance(value, (list, tuple)) else (value,)
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v not in bounds:
            raise error(f"{where}: expected a value {bounds}, got {value!r}")


@dataclass
class TrainerConfig:
    """How the engine runs the optimisation loop."""

    max_steps: int = field(default=1000, metadata=at_least(1))
    """Number of optimisation steps (>= 1)."""
    eval_every: int = field(default=500, metadata=at_least(0))
    """Evaluate every this many steps (and after the last step); 0 evaluates only at the end."""
    ckpt_every: int = field(default=500, metadata=at_least(0))
    """Write a checkpoint every this many steps (and after the last step); 0 only at the end."""
    keep_ckpts: int = field(default=2, metadata=at_least(0))
    """How many of the most recent checkpoints to keep (0 keeps all)."""
    log_every: int = field(default=10, metadata=at_least(1))
    """Record the training losses in metrics.json every this many steps (>= 1)."""
    seed: int = field(default=0, metadata=at_least(0))
    """Seed of every random choice of the run (initialisation, batches); >= 0."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train; "auto" takes CUDA when it is available."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass
class MethodConfig:
    """Keys shared by every method. Subclasses add the method's own sections (model, ...)
    and set ``_target`` to the method class that the config builds."""

    _target: ClassVar[type]
    """The method class this config builds (set by each subclass)."""
    run_keys: ClassVar[frozenset[str]] = frozenset()
    """The method's keys that steer how a run proceeds, not what it computes (e.g.
    GaussianObject's ``stage``): they may change when the run is resumed."""
    data: Path | None = None
    """Dataset directory (or file) to train on."""
    output: Path | None = None
    """Run directory; default outputs/<data name>/<method>. Rerunning a command resumes it."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Optimisation loop."""

    def __post_init__(self) -> None:
        check_ranges(self)  # the ranges of a subclass's own fields (nested sections check theirs)

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
            changes[key] = coerce_value(value, hints[key], f"{source}: '{dotted}'", fields[key].metadata.get(RANGE_KEY))
    try:
        return dataclasses.replace(config, **changes)
    except ConfigError:
        raise
    except ValueError as err:  # the config's own checks (__post_init__) reject the combination
        raise ConfigError(f"{source}: {err}") from err


def coerce_value(value: Any, hint: Any, where: str, bounds: Range | None = None) -> Any:
    """Converts a YAML value to the annotated type ``hint``, or raises ConfigError.

    Args:
        where: how the message names the value (``"<source>: '<dotted key>'"``).
        bounds: the field's declared :class:`Range` (checked on each number, also inside
            lists and tuples), or None.
    """
    value = _coerce(value, hint, where)
    if bounds is not None:
        _check_range(value, bounds, where, ConfigError)
    return value


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
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
        items = [_coerce(v, item, where) for v in value]
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
