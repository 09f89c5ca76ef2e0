"""Helpers for comparing metric files in the nuScenes tests."""

import math


def flatten_numbers(obj, path=""):
    """(path, value) of every number in a nested JSON object (NaN kept)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from flatten_numbers(v, f"{path}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from flatten_numbers(v, f"{path}[{i}]")
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield path, float(obj)


def max_abs_diff(reference: dict, ours: dict, skip=("eval_time",)) -> float:
    """Largest |difference| over every number of two metric files with identical structure
    (NaN must sit at the same places; keys must agree)."""
    ref = dict(flatten_numbers({k: v for k, v in reference.items() if k not in skip}))
    mine = dict(flatten_numbers({k: v for k, v in ours.items() if k not in skip}))
    assert ref.keys() == mine.keys(), sorted(set(ref) ^ set(mine))[:10]
    worst = 0.0
    for key, value in ref.items():
        if math.isnan(value) or math.isnan(mine[key]):
            assert math.isnan(value) and math.isnan(mine[key]), key
            continue
        worst = max(worst, abs(value - mine[key]))
    return worst
