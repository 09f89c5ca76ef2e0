"""``centerpoint``: CenterPoint (OpenPCDet's ``cbgs_voxel0075_res3d_centerpoint``) as a method.

    sparse3d-train method=centerpoint data=DATAROOT                 # nuScenes, GPU schedule
    sparse3d-train method=centerpoint preset=cpu data=DATAROOT      # the 2-core CPU config
    sparse3d-train method=centerpoint data=DATAROOT init=ckpt.pth   # from an OpenPCDet checkpoint
"""

from dataclasses import dataclass, field
from importlib import resources

from torch import nn

from sparse3d.detection.detectors.centerpoint import CenterPoint, CenterPointConfig
from sparse3d.engine.registry import MethodSpecification
from sparse3d.methods.detector import DetectorConfig, LidarDetector


class CenterPointMethod(LidarDetector):
    """CenterPoint trained and evaluated by :class:`LidarDetector`."""

    config: "CenterPointMethodConfig"

    def build_model(self, pc_range: tuple[float, ...], class_names: tuple[str, ...]) -> nn.Module:
        return CenterPoint(self.config.model, pc_range, class_names)


@dataclass
class CenterPointMethodConfig(DetectorConfig):
    _target = CenterPointMethod
    model: CenterPointConfig = field(default_factory=CenterPointConfig)
    """The network: voxels, encoder widths, BEV backbone, head, NMS."""


spec = MethodSpecification(
    config_type=CenterPointMethodConfig,
    description="CenterPoint: voxel sparse-conv encoder + BEV backbone + center heads (LiDAR 3D detection, nuScenes).",
    defaults=resources.files("sparse3d.configs") / "centerpoint.yaml",
    presets={"cpu": resources.files("sparse3d.configs") / "centerpoint_cpu.yaml"},
)
