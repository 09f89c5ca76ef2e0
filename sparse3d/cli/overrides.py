"""The Hydra-style ``key=value`` front of the command line, on top of tyro.

``sparse3d-train method=splat model.sh_degree=2 trainer.max_steps=500`` is checked here
(unknown keys get the closest valid ones) and rewritten to tyro's ``--model.sh_degree 2``
form; tyro then parses and type-checks the values and renders ``--help``.
"""

import sys
import typing
from typing import Any, NoReturn, TypeVar

import tyro

from sparse3d.engine.config import config_keys, unknown_key_message

T = TypeVar("T")

HELP_FLAGS = ("-h", "--help")


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
    """Applies ``key=value`` assignments to a config dataclass through tyro.

    Unknown keys exit with the closest valid keys; values tyro cannot convert exit with what
    was expected. ``wants_help`` prints every key with its default and documentation.
    """
    keys = config_keys(type(default))
    args: list[str] = []
    for key, value in assignments.items():
        if key not in keys:
            fail(prog, unknown_key_message(key, list(keys), "command line"))
        args += [f"--{key}", *_tyro_values(value, keys[key])]
    if wants_help:
        args.append("--help")
    return tyro.cli(
        type(default),
        default=default,
        args=args,
        prog=prog,
        description=description + "\n\nSet any key below as key=value.",
        config=(tyro.conf.FlagConversionOff,),
        use_underscores=True,
    )


def fail(prog: str, message: str) -> NoReturn:
    """Prints a usage error and exits with status 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _tyro_values(value: str, hint: Any) -> list[str]:
    """The tokens tyro expects for ``value``: bools capitalised, ``[a,b]`` as separate tokens."""
    if _accepts(hint, bool) and value.lower() in ("true", "false"):
        return [value.capitalize()]
    if value.startswith("[") and value.endswith("]"):
        return [v.strip() for v in value[1:-1].split(",") if v.strip()]
    return [value]


def _accepts(hint: Any, kind: type) -> bool:
    return hint is kind or kind in typing.get_args(hint)


