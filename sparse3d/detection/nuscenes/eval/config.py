"""The detection-eval configuration (the official ``detection_cvpr_2019``)."""

from dataclasses import dataclass, field

from sparse3d.data.nuscenes.classes import DETECTION_NAMES
from sparse3d.data.nuscenes.errors import NuScenesFormatError

TP_METRICS: tuple[str, ...] = ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err")
"""The five true-positive error metrics, in the devkit's order."""


def _cvpr_2019_ranges() -> dict[str, float]:
    return {"car": 50, "truck": 50, "bus": 50, "trailer": 50, "construction_vehicle": 50, "pedestrian": 40,
            "motorcycle": 40, "bicycle": 40, "traffic_cone": 30, "barrier": 30}


@dataclass(frozen=True)
class DetectionConfig:
    """Parameters of the nuScenes detection evaluation (defaults: ``detection_cvpr_2019``)."""

    class_range: dict[str, float] = field(default_factory=_cvpr_2019_ranges)
    """Per class: boxes (GT and predictions) at ego distance >= this (metres, xy) are ignored."""
    dist_fcn: str = "center_distance"
    """Matching distance; only the xy centre distance is defined."""
    dist_ths: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    """Matching thresholds (metres) over which AP is averaged."""
    dist_th_tp: float = 2.0
    """The threshold whose matches give the TP errors."""
    min_recall: float = 0.1
    """Recall below this (and the bin at it) is left out of AP and the TP errors."""
    min_precision: float = 0.1
    """Precision below this counts as 0 in AP."""
    max_boxes_per_sample: int = 500
    """Submissions with more boxes in one sample are rejected."""
    mean_ap_weight: int = 5
    """Weight of mAP in NDS (the five TP scores weigh 1 each)."""

    def __post_init__(self):
        if tuple(self.class_range) != DETECTION_NAMES:
            raise NuScenesFormatError(
                f"DetectionConfig.class_range must list exactly the classes {list(DETECTION_NAMES)} in that order, "
                f"got {list(self.class_range)}"
            )
        if self.dist_fcn != "center_distance":
            raise NuScenesFormatError(
                f"DetectionConfig.dist_fcn: only 'center_distance' is supported, got {self.dist_fcn!r}"
            )
        if self.dist_th_tp not in self.dist_ths:
            raise NuScenesFormatError(
                f"DetectionConfig.dist_th_tp={self.dist_th_tp} must be one of dist_ths {self.dist_ths}"
            )
        if not (0 <= self.min_precision < 1 and 0 <= self.min_recall <= 1):
            raise NuScenesFormatError(
                f"DetectionConfig: need 0 <= min_precision < 1 and 0 <= min_recall <= 1, "
                f"got {self.min_precision}, {self.min_recall}"
            )

    @property
    def class_names(self) -> tuple[str, ...]:
        """The evaluated classes, in config order."""
        return tuple(self.class_range)

    def serialize(self) -> dict:
        """The config as the devkit writes it into ``metrics_summary.json``."""
        return {"class_range": dict(self.class_range), "dist_fcn": self.dist_fcn, "dist_ths": list(self.dist_ths),
                "dist_th_tp": self.dist_th_tp, "min_recall": self.min_recall, "min_precision": self.min_precision,
                "max_boxes_per_sample": self.max_boxes_per_sample, "mean_ap_weight": self.mean_ap_weight}


def detection_cvpr_2019() -> DetectionConfig:
    """The official ``detection_cvpr_2019`` configuration."""
    return DetectionConfig()
