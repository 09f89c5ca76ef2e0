"""``dsvt``: DSVT-P (DSVT's ``dsvt_plain_1f_onestage_nusences``) with CenterPoint's head, as a method.

    sparse3d-train method=dsvt data=DATAROOT                 # nuScenes, GPU schedule
    sparse3d-train method=dsvt preset=cpu data=DATAROOT      # the 2-core CPU config
"""

from dataclasses import dataclass, field
from importlib import resources

from torch import nn

from sparse3d.detection.detectors.dsvt import DsvtDetector, DsvtDetectorConfig
from sparse3d.engine.registry import MethodSpecification
from sparse3d.methods.detector import DetectorConfig, LidarDetector


class DsvtMethod(LidarDetector):
    """DSVT-P trained and evaluated by :class:`LidarDetector`."""

    config: "DsvtMethodConfig"

    def build_model(self, pc_range: tuple[float, ...], class_names: tuple[str, ...]) -> nn.Module:
        return DsvtDetector(self.config.model, pc_range, class_names)


@dataclass
class DsvtMethodConfig(DetectorConfig):
    _target = DsvtMethod
    model: DsvtDetectorConfig = field(default_factory=DsvtDetectorConfig)
    """The network: pillars, transformer, BEV backbone, head, NMS."""


spec = MethodSpecification(
    config_type=DsvtMethodConfig,
    description="DSVT-P: dynamic pillars + rotated-set sparse transformer + residual BEV backbone + center heads (LiDAR 3D detection, nuScenes).",
    defaults=resources.files("sparse3d.configs") / "dsvt.yaml",
    presets={"cpu": resources.files("sparse3d.configs") / "dsvt_cpu.yaml"},
)
