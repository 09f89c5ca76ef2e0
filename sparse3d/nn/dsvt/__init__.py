"""DSVT: dynamic sparse voxel transformer with rotated sets and attention-style 3D pooling.

Reference: Wang et al., "DSVT: Dynamic Sparse Voxel Transformer with Rotated Sets",
CVPR 2023 (https://arxiv.org/abs/2301.06051).
"""

import functools
import warnings

from sparse3d.nn.bev import scatter_to_bev
from sparse3d.nn.dsvt.backbone import DSVT
from sparse3d.nn.dsvt.config import (
    DSVTConfig,
    DSVTStageConfig,
    dsvt_preset,
    dsvt_presets,
)
from sparse3d.nn.vfe import DynamicVFE

__all__ = ["DSVT", "DSVTConfig", "DSVTStageConfig", "DynamicVFE", "dsvt_preset", "dsvt_presets", "scatter_to_bev"]


def __getattr__(name: str):
    # The preset functions of 0.1 became YAML presets; kept for one release.
    if name in ("dsvt_p_nuscenes", "dsvt_v_waymo"):
        warnings.warn(
            f"sparse3d.nn.dsvt.{name}() moved to sparse3d.nn.dsvt.dsvt_preset({name!r}); "
            "the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return functools.partial(dsvt_preset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
