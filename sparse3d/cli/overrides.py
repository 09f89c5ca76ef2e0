"""The Hydra-style ``key=value`` front of the command line.

``sparse3d-train method=splat model.sh_degree=2 trainer.max_steps=500`` is checked here by
the validator that checks YAML configs (:func:`sparse3d.engine.config.update_config`):
unknown keys get the closest valid ones, and each value is read as YAML, so a config file
and the command line accept the same values. tyro renders ``--help``: every key with its
type, default and documentation.
"""

import contextlib
import sys
import types
import typing
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import tyro
import yaml

from sparse3d.engine.config import (
    ConfigError,
    config_keys,
    unknown_key_message,
    update_config,
)
from sparse3d.io.read import parse_yaml

T = TypeVar("T")

HELP_FLAGS = ("-h", "--help")
_SOURCE = "command line"
"""How error messages name where a value came from."""
_NONE = (None, "None")
"""Parsed values that set a key which may be None to None: YAML's nulls, and ``None`` as
``--help`` spells it (``--cache {None}|PATH``)."""


def split_assignments(argv: list[str], prog: str) -> tuple[dict[str, str], bool]:
    """Splits ``key=value`` tokens into a dict; returns it and whether help was asked for.

    Exits with a usage error for a token that is neither ``key=value`` nor a help flag, or
    for a key given twice.
    """
    assignments: dict[str, str] = {}
    wants_help = False
    for token in argv:
        if token in HELP_FLAGS:
            wants_help = True
            continue
        key, sep, value = token.partition("=")
        key = key.lstrip("+")
        if not sep or not key or key.startswith("-"):
            fail(prog, f"expected key=value arguments, got '{token}' (see {prog} --help)")
        if key in assignments:
            fail(prog, f"'{key}' is given twice")
        assignments[key] = value
    return assignments, wants_help


def parse_config(default: T, assignments: dict[str, str], prog: str, description: str, wants_help: bool) -> T:
    """Applies ``key=value`` assignments to a config dataclass, checked as YAML values are.

    A value is read as YAML (``3``, ``1e-3``, ``true``, ``null``, ``[a, b]``), except that
    a key of type str or Path takes the text as written (``version=1.0`` is the string
    "1.0", ``data=2024`` the folder "2024"), and that a key which may be None takes
    ``None`` as well as the YAML nulls (``cache=None``, ``cache=null``).

    Exits with status 2 for an unknown key (naming the closest valid keys), or a value of
    the wrong type or one the config's own checks reject (after listing every key with its
    type, as ``--help`` does). With
    ``wants_help``, prints every key with its default (the assignments applied) and
    documentation, and exits 0.
    """
    keys = config_keys(type(default))
    config = default
    for key, text in assignments.items():
        if key not in keys:
            fail(prog, unknown_key_message(key, list(keys), _SOURCE))
        try:
            value = parse_yaml(text)
        except yaml.YAMLError:  # e.g. "[1,": the text itself, which the type check reports
            value = text
        hint = keys[key]
        if _accepts(hint, type(None)) and value in _NONE:
            value = None
        elif _accepts(hint, str) or _accepts(hint, Path):
            value = text
        for part in reversed(key.split(".")):
            value = {part: value}
        try:
            config = update_config(config, value, _SOURCE)
        except ConfigError as err:
            _print_keys(config, prog, description)
            fail(prog, str(err))
    if wants_help:
        _print_keys(config, prog, description)
        raise SystemExit(0)
    return config


def fail(prog: str, message: str) -> NoReturn:
    """Prints a usage error and exits with status 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _print_keys(config: Any, prog: str, description: str) -> None:
    """Prints tyro's ``--help`` of the config dataclass ``config``: every key as
    ``--section.key TYPE`` with its documentation and its value in ``config`` as default."""
    with contextlib.suppress(SystemExit):  # tyro exits after printing the help
        tyro.cli(
            type(config),
            default=config,
            args=["--help"],
            prog=prog,
            description=description + "\n\nSet any key below as key=value.",
            config=(tyro.conf.FlagConversionOff,),
            use_underscores=True,
        )


def _accepts(hint: Any, kind: type) -> bool:
    """Whether the type ``hint`` is ``kind`` or a union with ``kind`` among its members."""
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return hint is kind or (is_union and kind in typing.get_args(hint))
