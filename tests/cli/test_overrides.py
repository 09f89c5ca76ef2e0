"""key=value values go through the YAML config validator: YAML values, text for str and
Path keys, the validator's messages."""

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sparse3d.cli.overrides import parse_config


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
