"""The Hydra-style ``key=value`` front of the command line.

``sparse3d-train method=splat model.sh_degree=2 trainer.max_steps=500`` is checked here by
the validator that checks YAML configs (:func:`sparse3d.engine.config.update_config`):
unknown keys get the closest valid ones, and each value is read as YAML, so a config file
and the command line accept the same values. tyro's own spellings ``--key value`` and
``--key=value`` (with ``-`` or ``_`` in the key) mean the same as ``key=value``. tyro renders
``--help``: every key with its type, default (or "required") and documentation.
"""

import collections.abc
import contextlib
import io
import re
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
    """Splits ``key=value`` (or ``--key value``, ``--key=value``) tokens into a dict; returns
    it and whether help was asked for.

    Exits with a usage error for a token that is none of these nor a help flag, or for a
    key given twice.
    """
    assignments, _, wants_help = split_arguments(argv, prog)
    return assignments, wants_help


def split_arguments(argv: list[str], prog: str, max_positionals: int = 0) -> tuple[dict[str, str], list[str], bool]:
    """Like :func:`split_assignments`, but also takes up to ``max_positionals`` bare tokens
    (e.g. an output folder); returns (assignments, positionals, whether help was asked for).

    In ``--key value`` the next token is the value, even if it starts with a single ``-``
    (``--offset -1``); ``--key`` followed by nothing or by another ``--`` flag is an error.
    A help flag anywhere asks for help; the other arguments are still read, so that the
    help shows their values.
    """
    assignments: dict[str, str] = {}
    positionals: list[str] = []
    wants_help = False
    previous_flag = None  # "--key" if the previous value followed it, for the hint on a stray list item
    tokens = iter(argv)
    for token in tokens:
        flag, previous_flag = previous_flag, None
        if token in HELP_FLAGS:
            wants_help = True
            continue
        if token.startswith("--"):
            key, sep, value = token[2:].partition("=")
            key = key.replace("-", "_")  # tyro spells --trainer.max-steps by default
            if not sep:
                value = next(tokens, None)
                if value in HELP_FLAGS:
                    wants_help = True
                    continue
                if value is None or value.startswith("--"):
                    fail(prog, f"'{token}' needs a value: {token} VALUE, or {key}=VALUE (see {prog} --help)")
                previous_flag = token
        elif "=" in token:
            key, _, value = token.partition("=")
            key = key.lstrip("+")  # Hydra's +key=value
        elif not token.startswith("-") and len(positionals) < max_positionals:
            positionals.append(token)
            continue
        else:
            key = ""
        if not key or key.startswith("-"):
            hint = f"; a list is one value: {flag} '[a, b]'" if flag and "=" not in token else ""
            fail(prog, f"expected key=value or --key value arguments, got '{token}'{hint} (see {prog} --help)")
        if key in assignments:
            fail(prog, f"'{key}' is given twice")
        assignments[key] = value
    return assignments, positionals, wants_help


def parse_config(default: T, assignments: dict[str, str], prog: str, description: str, wants_help: bool) -> T:
    """Applies ``key=value`` assignments to a config dataclass, checked as YAML values are.

    A value is read as YAML (``3``, ``1e-3``, ``true``, ``null``, ``[a, b]``), except that
    a key of type str or Path takes the text as written (``version=1.0`` is the string
    "1.0", ``data=2024`` the folder "2024"), and that a key which may be None takes
    ``None`` as well as the YAML nulls (``cache=None``, ``cache=null``).

    A field of ``default`` set to ``tyro.MISSING`` is required: ``--help`` shows it as
    such, and leaving it out is an error.

    Exits with status 2 for an unknown key (naming the closest valid keys), a value of the
    wrong type or one the config's own checks reject (after listing every key with its
    type, as ``--help`` does), or a missing required key. With ``wants_help``, prints every
    key with its type, default (the valid assignments applied) and documentation, and exits
    0, whatever else is given or missing.
    """
    keys = config_keys(type(default))
    values = {}
    for key, text in assignments.items():
        if key not in keys:
            if wants_help:
                continue  # the help shows every valid key
            fail(_name(prog), unknown_key_message(key, list(keys), _SOURCE))
        values[key] = _assigned_value(text, keys[key])
    try:
        # All at once, so that values checked together (one per level, say) change together.
        config = update_config(default, _nested(values), _SOURCE)
    except ConfigError as err:
        if not wants_help:
            _print_keys(default, prog, description)
            fail(_name(prog), str(err))
        config = default  # the help shows each valid assignment applied
        for key, value in values.items():
            with contextlib.suppress(ConfigError):
                config = update_config(config, _nested({key: value}), _SOURCE)
    if wants_help:
        _print_keys(config, prog, description)
        raise SystemExit(0)
    missing = [key for key in keys if _value(config, key) is tyro.MISSING]
    if missing:
        given = " ".join(f"{key}={_metavar(keys[key])}" for key in missing)
        fail(_name(prog), f"missing {given} (see {prog} --help)")
    return config


def _assigned_value(text: str, hint: Any) -> Any:
    """The value of ``key=text`` for a key of type ``hint``, as parse_config reads it."""
    try:
        value = parse_yaml(text)
    except yaml.YAMLError:  # e.g. "[1,": the text itself, which the type check reports
        value = text
    if _accepts(hint, type(None)) and value in _NONE:
        return None
    if _accepts(hint, str) or _accepts(hint, Path):
        return text
    if _is_sequence(hint) and value is not None and not isinstance(value, list):
        return [value]  # --objects box: a list of one
    return value


def _nested(values: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys as nested mappings: {"a.b": 1, "a.c": 2} -> {"a": {"b": 1, "c": 2}}."""
    nested: dict[str, Any] = {}
    for key, value in values.items():
        *sections, name = key.split(".")
        node = nested
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    return nested


def fail(prog: str, message: str) -> NoReturn:
    """Prints a usage error and exits with status 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def help_text(config: Any, prog: str, description: str) -> str:
    """tyro's ``--help`` of the config dataclass ``config``: every key as ``--section.key
    TYPE`` with its documentation and its value in ``config`` as default ("required" for a
    ``tyro.MISSING`` value)."""
    out = io.StringIO()
    with _joined_docstrings(), contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        tyro.cli(  # tyro prints the help and exits
            type(config),
            default=config,
            args=["--help"],
            prog=prog,
            description=description + "\n\nSet any key below as key=value, --key value or --key=value.",
            config=(tyro.conf.FlagConversionOff,),
            use_underscores=True,
        )
    return out.getvalue()


def _print_keys(config: Any, prog: str, description: str) -> None:
    """Prints :func:`help_text`."""
    print(help_text(config, prog, description), end="")


@contextlib.contextmanager
def _joined_docstrings():
    """Makes tyro join the lines of a field's docstring into paragraphs.

    tyro keeps a line break before each continuation line of an attribute docstring (it
    sees the indentation first), so the help broke lines mid-sentence; this joins every
    line break except before a blank line or a list item. tyro has no setting for it, so
    its (internal) line joiner is swapped while the help is rendered.
    """
    strings = getattr(tyro, "_strings", None)
    original = getattr(strings, "remove_single_line_breaks", None)
    if original is None:  # another tyro: keep its own formatting
        yield
        return
    strings.remove_single_line_breaks = _join_lines
    try:
        yield
    finally:
        strings.remove_single_line_breaks = original


def _join_lines(text: str) -> str:
    paragraphs: list[list[str]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line:
            if paragraphs[-1]:
                paragraphs.append([])
        elif re.match(r"([-*•]|\d+[.)])\s", line) and paragraphs[-1]:
            paragraphs[-1].append("\n" + line)
        else:
            paragraphs[-1].append(line)
    return "\n\n".join(" ".join(p).replace(" \n", "\n") for p in paragraphs if p)


def _name(prog: str) -> str:
    """The command's name in error messages: ``sparse3d-train`` of ``sparse3d-train method=splat``."""
    return prog.split()[0]


def _value(config: Any, key: str) -> Any:
    for part in key.split("."):
        config = getattr(config, part, None)
    return config


def _metavar(hint: Any) -> str:
    """The placeholder of a value, as tyro's help writes it: PATH, INT, STR, ..."""
    return getattr(hint, "__name__", "VALUE").upper()


def _is_sequence(hint: Any) -> bool:
    return typing.get_origin(hint) in (list, tuple, typing.Sequence, collections.abc.Sequence)


def _accepts(hint: Any, kind: type) -> bool:
    """Whether the type ``hint`` is ``kind`` or a union with ``kind`` among its members."""
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return hint is kind or (is_union and kind in typing.get_args(hint))
