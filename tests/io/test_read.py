"""JSON / YAML reading: values as the json module and safe_load give them, and errors of
the caller's type that name the file."""

import math

import pytest

from sparse3d.io.read import parse_yaml, read_json, read_yaml


class TableError(ValueError):
    """Stands for a layer's own error type (NuScenesFormatError, ConfigError)."""


def test_json_values_including_nan(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"a": [1, 2.5, "x", null, true], "v": NaN}')  # NaN: the json-module path
    data = read_json(path)
    assert data["a"] == [1, 2.5, "x", None, True] and math.isnan(data["v"])
    path.write_text('[{"token": "t", "size": [1.0, 2.0, 3.0]}]')
    assert read_json(path) == [{"token": "t", "size": [1.0, 2.0, 3.0]}]


def test_errors_name_the_file_and_use_the_callers_type(tmp_path):
    missing, bad = tmp_path / "missing.json", tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="missing.json: file not found"):
        read_json(missing)
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        read_json(bad)
    # With ``what``, messages lead with what the file is for, then name it.
    with pytest.raises(TableError, match="table 'sample': file not found: .*missing.json"):
        read_json(missing, "table 'sample'", TableError)
    with pytest.raises(TableError, match="table 'sample': .*bad.json is not valid JSON"):
        read_json(bad, "table 'sample'", TableError)


def test_yaml_reading(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-3\nsteps: 10\nname: null\nflag: yes\n")
    assert read_yaml(path) == {"lr": 0.001, "steps": 10, "name": None, "flag": True}
    path.write_text("")
    assert read_yaml(path) is None
    path.write_text("a: [1, 2\n")
    with pytest.raises(TableError, match="c.yaml: not valid YAML"):
        read_yaml(path, error=TableError)


@pytest.mark.parametrize(
    "text, value",
    [("1e-3", 0.001), ("-2E+4", -20000.0), (".5e1", 5.0), ("1.0", 1.0), ("3", 3), ("true", True), ("null", None),
     ("[1, 2e-3]", [1, 0.002]), ("e5", "e5"), ("127.0.0.1", "127.0.0.1"), ("v1.0-mini", "v1.0-mini")],
)
def test_parse_yaml_reads_exponent_floats(text, value):
    assert parse_yaml(text) == value
