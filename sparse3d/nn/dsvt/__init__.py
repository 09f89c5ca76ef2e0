"""DSVT: dynamic sparse voxel transformer with rotated sets and attention-style 3D pooling.

Reference: Wang et al., "DSVT: Dynamic Sparse Voxel Transformer with Rotated Sets",
CVPR 2023 (https://arxiv.org/abs/2301.06051).
"""

from sparse3d.nn.dsvt.backbone import DSVT, scatter_to_bev
from sparse3d.nn.dsvt.configs import (
    DSVTConfig,
    DSVTStageConfig,
    dsvt_p_nuscenes,
    dsvt_v_waymo,
)
from sparse3d.nn.vfe import DynamicVFE

__all__ = ["DSVT", "DSVTConfig", "DSVTStageConfig", "DynamicVFE", "dsvt_p_nuscenes", "dsvt_v_waymo", "scatter_to_bev"]
