"""The fast JSON decoder and its json-module fallback read the same values."""

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest

from sparse3d.io import json_fast
from sparse3d.io.atomic import write_json_atomic
from sparse3d.io.read import read_json


@dataclass(frozen=True)
class _Box:
    name: str
    centre: tuple[float, float, float]
    speed: tuple[float | None, float | None]
    score: float = -1.0


_BOXES = [{"name": "a", "centre": [1, 2.5, 3e-3], "speed": [None, 1.0], "extra": {"x": [1]}},
          {"name": "b", "centre": [4.0, 5.0, 6.0], "speed": [0.5, 2.0], "score": 0.25}]


@pytest.mark.parametrize("fast", [True, False], ids=["msgspec", "json"])
def test_records_and_columns(tmp_path, monkeypatch, fast):
    """Typed records (fast) or dicts (fallback) give the same columns; a file that does not
    fit the schema comes back as plain values."""
    if fast:
        pytest.importorskip("msgspec")
    else:
        monkeypatch.setattr(json_fast, "msgspec", None)
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(_BOXES))
    records = read_json(path, schema=list[_Box])
    assert json_fast.is_record(records[0]) == fast
    assert json_fast.values(records, "name") == ["a", "b"]
    np.testing.assert_array_equal(json_fast.column(records, "centre", np.float64, 3), [[1, 2.5, 3e-3], [4, 5, 6]])
    np.testing.assert_array_equal(json_fast.column(records, "speed", np.float64, 2), [[np.nan, 1], [0.5, 2]])
    np.testing.assert_array_equal(json_fast.column(records, "score", np.float64, default=-1.0), [-1.0, 0.25])
    assert json_fast.column([], "centre", np.float64, 3).shape == (0, 3)
    path.write_text(json.dumps([{"name": "a"}]))  # no centre: plain values either way
    assert read_json(path, schema=list[_Box]) == [{"name": "a"}]


def test_dict_columns_check_their_shape():
    with pytest.raises(ValueError):  # ragged: 2 + 4 numbers must not pass as 2 x 3
        json_fast.column([{"c": [1.0, 2.0]}, {"c": [1.0, 2.0, 3.0, 4.0]}], "c", np.float64, 3)
    with pytest.raises(ValueError, match="expected 3 numbers"):
        json_fast.column([{"c": [1.0, 2.0]}, {"c": [1.0, 2.0]}], "c", np.float64, 3)


def test_compact_writes_keep_nan(tmp_path):
    """Compact files go through the fast encoder unless it would turn NaN into null."""
    path = tmp_path / "out.json"
    for data in ({"a": [1.5, 2.0, 1e-5], "b": "x"}, {"a": None}):
        write_json_atomic(path, data, indent=None)
        assert json.loads(path.read_text()) == data
    write_json_atomic(path, {"a": [math.nan, 1.0]}, indent=None)
    assert path.read_text() == '{"a": [NaN, 1.0]}'
