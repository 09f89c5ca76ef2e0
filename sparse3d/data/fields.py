"""Checked access to fields of JSON metadata: errors name the file, the field and what
was expected, instead of a KeyError or a silently wrong pose."""

import math
from typing import Any

import torch
from torch import Tensor


def require(obj: dict, key: str, where: str) -> Any:
    """``obj[key]``, or a KeyError-free ValueError naming ``where`` and ``key``."""
    if not isinstance(obj, dict) or key not in obj:
        raise ValueError(f"{where}: missing required field '{key}'")
    return obj[key]


def finite_number(value: Any, where: str, positive: bool = False) -> float:
    """``value`` as a finite float (and > 0 if ``positive``), else a ValueError at ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{where}: expected a positive number, got {value!r}")
    return float(value)


def positive_int(value: Any, where: str) -> int:
    """``value`` as a positive int (integral floats accepted), else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
        raise ValueError(f"{where}: expected a positive integer, got {value!r}")
    return int(value)


def pose_matrix(value: Any, where: str) -> Tensor:
    """A 4 x 4 (or 3 x 4, completed with 0 0 0 1) finite pose as float64 [4, 4]."""
    try:
        mat = torch.tensor(value, dtype=torch.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: expected a 4x4 matrix of numbers ({err})") from err
    if mat.shape == (3, 4):
        mat = torch.cat([mat, torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)])
    if mat.shape != (4, 4):
        raise ValueError(f"{where}: expected a 4x4 matrix, got shape {list(mat.shape)}")
    if not torch.isfinite(mat).all():
        raise ValueError(f"{where}: the pose has non-finite values: {mat.tolist()}")
    return mat
