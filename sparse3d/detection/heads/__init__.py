"""Dense detection heads over BEV feature maps."""

from sparse3d.detection.heads.center_head import (
    NUSCENES_TASK_GROUPS,
    REGRESSION_HEADS,
    CenterHead,
    CenterHeadConfig,
    SeparateHead,
    box_regression_loss,
    class_ids_each_head,
    heatmap_focal_loss,
)

__all__ = [
    "NUSCENES_TASK_GROUPS",
    "REGRESSION_HEADS",
    "CenterHead",
    "CenterHeadConfig",
    "SeparateHead",
    "box_regression_loss",
    "class_ids_each_head",
    "heatmap_focal_loss",
]
