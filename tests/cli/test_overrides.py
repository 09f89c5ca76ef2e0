"""key=value values go through the YAML config validator: YAML values, text for str and
Path keys, the validator's messages."""

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sparse3d.cli.overrides import (
    help_text,
    parse_config,
    split_arguments,
    split_assignments,
)


@dataclass
class Section:
    lr: float = 0.1
    names: tuple[str, ...] = ("a",)


@dataclass
class Command:
    run: Path = Path()
    cache: Path | None = Path("cache")
    version: str = "v1.0-mini"
    limit: int | None = 3
    flag: bool = True
    section: Section = field(default_factory=Section)


def _parse(**assignments: str) -> Command:
    return parse_config(Command(), {k.replace("__", "."): v for k, v in assignments.items()}, "prog", "doc", False)


def test_values_are_read_as_yaml_and_checked_as_config_values():
    got = _parse(limit="null", flag="false", section__lr="1e-3", section__names="[x, y]")
    assert got.limit is None and got.flag is False and got.section == Section(0.001, ("x", "y"))
    assert _parse() == Command()


def test_str_and_path_keys_take_the_text():
    got = _parse(run="2024", version="1.0", cache="null")
    assert got.run == Path("2024") and got.version == "1.0" and got.cache is None
    assert _parse(cache="None", limit="None") == Command(cache=None, limit=None)
    assert _parse(run="null").run == Path("null")  # run cannot be None


@pytest.mark.parametrize(
    "key, text, message",
    [("limit", "abc", "command line: 'limit': expected int | None, got 'abc'"),
     ("section.lr", "[1,", "'section.lr': expected float, got '\\[1,'"),
     ("section.lr_", "1", "unknown key 'section.lr_'; did you mean section.lr")],
)
def test_errors_exit_with_the_validators_message(capsys, key, text, message):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(Command(), {key: text}, "prog", "doc", False)
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


@dataclass
class Levels:
    sizes: tuple[float, ...] = (0.4, 0.2)
    dims: tuple[int, ...] = (29, 15)

    def __post_init__(self) -> None:
        if len(self.sizes) != len(self.dims):
            raise ValueError("Levels needs one dim per size")


@dataclass
class Layered:
    levels: Levels = field(default_factory=Levels)


def test_values_checked_together_change_together(capsys):
    got = parse_config(Layered(), {"levels.sizes": "[0.4]", "levels.dims": "[29]"}, "prog", "doc", False)
    assert got.levels == Levels((0.4,), (29,))
    with pytest.raises(SystemExit):
        parse_config(Layered(), {"levels.sizes": "[0.4]"}, "prog", "doc", False)
    assert "one dim per size" in capsys.readouterr().err


@dataclass
class Documented:
    count: int = 1
    """Short,
    then more.

    - item one
    - item two"""


def test_help_joins_docstring_lines_into_sentences():
    text = help_text(Documented(), "prog", "doc")
    assert "Short, then more." in text  # tyro broke the line before "then more."
    assert re.search(r"item one\s*\n.*- item two", text)  # list items keep their lines


@pytest.mark.parametrize(
    "argv",
    [["limit=5", "section.lr=0.5", "run=r"],
     ["--limit", "5", "--section.lr", "0.5", "--run", "r"],
     ["--limit=5", "--section.lr=0.5", "--run=r"],
     ["--limit", "5", "section.lr=0.5", "--run=r"]],
)
def test_tyro_flags_and_key_value_give_the_same_assignments(argv):
    assert split_assignments(argv, "prog") == ({"limit": "5", "section.lr": "0.5", "run": "r"}, False)


def test_tyro_flags_with_hyphens_negative_values_and_help():
    assert split_assignments(["--section.max-steps", "-1", "--help"], "prog") == ({"section.max_steps": "-1"}, True)
    assert split_assignments(["--limit", "--help"], "prog") == ({}, True)
    assert split_arguments(["out", "--limit", "2"], "prog", max_positionals=1) == ({"limit": "2"}, ["out"], False)


@pytest.mark.parametrize(
    "argv, message",
    [(["--limit"], "'--limit' needs a value"),
     (["--limit", "--flag", "true"], "'--limit' needs a value"),
     (["--section.names", "a", "b"], "got 'b'; a list is one value: --section.names '\\[a, b\\]'"),
     (["limit"], "expected key=value or --key value arguments, got 'limit'"),
     (["limit=1", "--limit", "2"], "'limit' is given twice")],
)
def test_bad_tokens_are_usage_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        split_assignments(argv, "prog")
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_a_single_value_of_a_list_key_is_a_list_of_one():
    assert _parse(section__names="b").section.names == ("b",)


def test_missing_marks_a_required_key(capsys):
    import tyro

    with pytest.raises(SystemExit) as exit_info:
        parse_config(Command(run=tyro.MISSING), {"limit": "2"}, "prog", "doc", False)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "prog: error: missing run=PATH (see prog --help)\n"
    with pytest.raises(SystemExit) as exit_info:  # --help despite the missing key and a bad value
        parse_config(Command(run=tyro.MISSING), {"limit": "x", "nokey": "1"}, "prog", "doc", True)
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert re.search(r"--run PATH .*\(required\)", out) and "(default: 3)" in out


def _config_of(monkeypatch, command: str, argv: list[str]):
    """The config that a command's entrypoint would run with ``argv``."""
    from sparse3d.cli import data, eval, train, view

    seen = []
    if command == "data":
        monkeypatch.setattr(data.Generator, "load", lambda self: (_attribute(self.config), lambda out, c: seen.append((out, c))))
        data.entrypoint(argv)
    else:
        module = {"train": train, "eval": eval, "view": view}[command]
        monkeypatch.setattr(module, "main", lambda *args: seen.append(args))
        module.entrypoint(argv)
    (config,) = seen
    return config


def _attribute(path):
    from sparse3d.cli.data import _attribute as attribute

    return attribute(path)


@pytest.mark.parametrize(
    "command, key_value, flags",
    [("train", ["method=splat", "data=d", "trainer.max_steps=5", "model.sh_degree=1"],
      ["--method", "splat", "--data", "d", "--trainer.max-steps", "5", "--model.sh_degree=1"]),
     ("eval", ["run=r"], ["--run", "r"]),
     ("eval", ["results=p.json", "dataroot=db", "split=mini_val", "cache=null"],
      ["--results", "p.json", "--dataroot=db", "--split", "mini_val", "--cache", "None"]),
     ("view", ["run=r", "port=0", "host=localhost"], ["--run", "r", "--port", "0", "--host=localhost"]),
     ("data", ["objects", "out", "resolution=16", "objects=[box]"],
      ["objects", "--resolution", "16", "out", "--objects", "box"])],
)
def test_flags_and_key_value_give_the_same_config(monkeypatch, command, key_value, flags):
    expected = _config_of(monkeypatch, command, key_value)
    assert _config_of(monkeypatch, command, flags) == expected
