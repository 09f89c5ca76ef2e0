"""The nuScenes detection metrics (mAP, TP errors, NDS), computed exactly as the official
devkit computes them, in vectorised float64 numpy."""

from sparse3d.detection.nuscenes.eval.config import DetectionConfig, detection_cvpr_2019
from sparse3d.detection.nuscenes.eval.evaluate import evaluate_nuscenes
from sparse3d.detection.nuscenes.eval.report import format_metrics_table

__all__ = ["DetectionConfig", "detection_cvpr_2019", "evaluate_nuscenes", "format_metrics_table"]
