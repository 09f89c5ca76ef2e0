"""Typed configs from YAML: key and type checking, round trips."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from sparse3d.engine.config import (
    ConfigError,
    MethodConfig,
    config_keys,
    config_to_dict,
    load_yaml,
    update_config,
)


@dataclass
class Inner:
    size: int = 3
    scale: float = 1.0
    mode: Literal["a", "b"] = "a"
    dims: tuple[int, ...] = (1, 2)


@dataclass
class Example(MethodConfig):
    inner: Inner = field(default_factory=Inner)
    name: str | None = None


def test_keys_are_flattened_and_private_fields_hidden():
    keys = config_keys(Example)
    assert "inner.size" in keys and "trainer.max_steps" in keys and "data" in keys
    assert not any(k.startswith("_") for k in keys)


def test_update_converts_yaml_values_to_field_types():
    config = update_config(Example(), {"data": "x/y", "inner": {"scale": 2, "dims": [4, 5]}}, "test.yaml")
    assert config.data == Path("x/y")
    assert config.inner.scale == 2.0 and isinstance(config.inner.scale, float)
    assert config.inner.dims == (4, 5)
    assert Example().inner.scale == 1.0  # the default instance is untouched


def test_round_trip_through_dict():
    config = update_config(Example(), {"inner": {"mode": "b", "size": 7}, "name": "z"}, "test")
    assert update_config(Example(), config_to_dict(config), "round trip") == config


@pytest.mark.parametrize(
    "values, message",
    [
        ({"inner": {"sise": 4}}, "test.yaml: unknown key 'inner.sise'; did you mean inner.size"),
        ({"inner": {"size": "four"}}, "test.yaml: 'inner.size': expected int, got 'four'"),
        ({"inner": {"size": True}}, "expected int"),
        ({"inner": {"mode": "c"}}, r"expected one of \['a', 'b'\]"),
        ({"inner": 3}, "'inner' is a section"),
        ({"trainer": {"max_steps": 2.5}}, "'trainer.max_steps': expected int"),
    ],
)
def test_bad_values_name_file_key_and_expectation(values, message):
    with pytest.raises(ConfigError, match=message):
        update_config(Example(), values, "test.yaml")


def test_load_yaml_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: file not found"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_yaml(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="scalar.yaml: expected a mapping"):
        load_yaml(scalar)
