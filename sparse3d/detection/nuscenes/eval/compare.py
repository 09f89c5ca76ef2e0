"""Comparing two metric files number by number (ours against the devkit's)."""

import math
from collections.abc import Iterator
from typing import Any


def flatten_numbers(obj: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """(path, value) of every number in a nested JSON object, NaN kept; bools are not numbers."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from flatten_numbers(v, f"{path}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from flatten_numbers(v, f"{path}[{i}]")
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield path, float(obj)


def max_abs_diff(reference: dict, ours: dict, skip: tuple[str, ...] = ("eval_time",)) -> float:
    """Largest |difference| over every number of two metric files (top-level keys in ``skip``
    excluded); inf when their structure differs or NaN stands in different places."""
    ref = dict(flatten_numbers({k: v for k, v in reference.items() if k not in skip}))
    mine = dict(flatten_numbers({k: v for k, v in ours.items() if k not in skip}))
    if ref.keys() != mine.keys():
        return math.inf
    worst = 0.0
    for key, a in ref.items():
        b = mine[key]
        if math.isnan(a) or math.isnan(b):
            if not (math.isnan(a) and math.isnan(b)):
                return math.inf
            continue
        worst = max(worst, abs(a - b))
    return worst
