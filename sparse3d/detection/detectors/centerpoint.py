"""CenterPoint (OpenPCDet's ``cbgs_voxel0075_res3d_centerpoint``): MeanVFE -> VoxelResBackBone8x
-> height compression -> BaseBEVBackbone -> CenterHead, with OpenPCDet's module names
(``vfe``, ``backbone_3d``, ``backbone_2d``, ``dense_head``; the VFE and the height
compression, OpenPCDet's ``map_to_bev_module``, hold no parameters), so an OpenPCDet
checkpoint's ``model_state`` loads name for name (:mod:`sparse3d.detection.detectors.openpcdet`).

Reference: Yin et al., "Center-based 3D Object Detection and Tracking", CVPR 2021.
"""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import Tensor, nn

from sparse3d.core.sparse_voxels import SparseVoxels
from sparse3d.data.nuscenes.classes import DETECTION_NAMES
from sparse3d.detection.decode import decode_center_predictions
from sparse3d.detection.heads.center_head import CenterHead, CenterHeadConfig
from sparse3d.detection.necks.bev_backbone import BaseBEVBackbone, BevBackboneConfig
from sparse3d.detection.post_process import Detections, NmsConfig, suppress_heads
from sparse3d.detection.targets import BevGrid
from sparse3d.engine.config import at_least, check_ranges
from sparse3d.nn.backbones.voxel_resnet import VoxelResBackBone8x
from sparse3d.nn.vfe import MeanVFE


@dataclass
class CenterPointConfig:
    """The network (OpenPCDet's nuScenes voxel-0.075 CenterPoint by default). The point-cloud
    range and the classes are the data's (:class:`sparse3d.detection.dataset.DetectionDataConfig`),
    given to :class:`CenterPoint` as OpenPCDet gives them to its models."""

    voxel_size: tuple[float, float, float] = (0.075, 0.075, 0.2)
    """Voxel size, metres; with the point-cloud range it sets the grid (1440 x 1440 x 40 on
    nuScenes' [-54, 54] x [-54, 54] x [-5, 3] m)."""
    point_features: int = field(default=5, metadata=at_least(3))
    """Columns per point: x, y, z, intensity, time lag."""
    max_points_per_voxel: int = field(default=10, metadata=at_least(1))
    """Points averaged per voxel (the first ones: the data pipeline shuffles points)."""
    encoder_channels: tuple[int, int, int, int] = (16, 32, 64, 128)
    """Widths of the four stages of the sparse 3D encoder."""
    bev: BevBackboneConfig = field(default_factory=BevBackboneConfig)
    """The 2D backbone on the height-compressed BEV map."""
    head: CenterHeadConfig = field(default_factory=CenterHeadConfig)
    """The dense head: task groups, targets, losses, decoding."""
    nms: NmsConfig = field(default_factory=NmsConfig)
    """Per-head suppression of the decoded boxes."""

    def __post_init__(self) -> None:
        check_ranges(self)


class CenterHeadDetector(nn.Module, ABC):
    """What every detector ending in a :class:`CenterHead` shares (CenterPoint, DSVT): points
    -> ``vfe`` -> :meth:`encode` (the detector's own part) -> ``backbone_2d`` -> ``dense_head``,
    the head's losses and the decoded, per-head suppressed boxes.

    A subclass sets ``vfe``, ``backbone_2d``, ``dense_head``, ``grid`` (the feature map of
    the head's input), ``class_names`` and ``config``, whose ``nms`` field is the
    suppression, and implements :meth:`encode`.
    """

    vfe: nn.Module
    backbone_2d: nn.Module
    dense_head: CenterHead
    grid: BevGrid
    class_names: tuple[str, ...]

    def forward(self, points: Tensor, batch_size: int, batch: Tensor | None = None) -> list[dict[str, Tensor]]:
        """CenterHead predictions for a batch of point clouds.

        Args:
            points: float [P, point_features] (x, y, z, intensity, time lag), LiDAR frame.
            batch_size: B.
            batch: int32 [P] sample of each point, or None when B == 1.

        Returns:
            per task group a dict of float maps [B, ·, H, W] on :attr:`grid`: ``center``,
            ``center_z``, ``dim``, ``rot``, ``vel`` and ``hm`` (heatmap logits).
        """
        return self.dense_head(self.backbone_2d(self.encode(self.vfe(points, batch_size, batch))))

    @abstractmethod
    def encode(self, voxels: SparseVoxels) -> Tensor:
        """The BEV feature map float [B, C, H, W] of ``vfe``'s voxels (or pillars)."""

    def loss(self, preds: list[dict[str, Tensor]], gt_boxes: list[Tensor], gt_labels: list[Tensor]) -> dict[str, Tensor]:
        """The head's losses (per task group: heatmap focal, weighted box L1) for the batch.

        Args:
            preds: ``forward``'s output.
            gt_boxes: per sample float [M_b, 9] (x, y, z, dx, dy, dz, yaw, vx, vy), LiDAR frame.
            gt_labels: per sample int64 [M_b], indices into ``class_names``.
        """
        return self.dense_head.loss(preds, self.dense_head.targets(gt_boxes, gt_labels, self.grid))

    def detections(self, preds: list[dict[str, Tensor]]) -> list[Detections]:
        """Per sample, the boxes kept after decoding and per-head suppression."""
        candidates = decode_center_predictions(preds, self.grid, self.dense_head.config, self.class_names)
        return [suppress_heads(heads, self.config.nms) for heads in candidates]


class CenterPoint(CenterHeadDetector):
    """Points to CenterHead predictions, losses and boxes.

    Args:
        config: the network.
        pc_range: point-cloud range [x0, y0, z0, x1, y1, z1], metres (LiDAR frame); points
            outside it are dropped.
        class_names: the classes; labels are indices into this sequence.
    """

    ENCODER_STRIDE = 8  # VoxelResBackBone8x: three stride-2 stages in x and y

    def __init__(self, config: CenterPointConfig, pc_range: Sequence[float], class_names: Sequence[str] = DETECTION_NAMES):
        super().__init__()
        self.config, self.class_names = config, tuple(class_names)
        pc_range = tuple(float(v) for v in pc_range)
        self.vfe = MeanVFE(config.point_features, pc_range, config.voxel_size, config.max_points_per_voxel)
        self.backbone_3d = VoxelResBackBone8x(config.point_features, self.vfe.grid_shape, config.encoder_channels)
        self.backbone_2d = BaseBEVBackbone(config.bev, self.backbone_3d.bev_channels)
        self.dense_head = CenterHead(config.head, config.bev.out_channels, self.class_names)
        self.grid = BevGrid(pc_range, tuple(config.voxel_size), self.ENCODER_STRIDE * config.bev.stride)

    def encode(self, voxels: SparseVoxels) -> Tensor:
        """[B, C * D, H, W]: the sparse encoder's output, its height folded into the channels."""
        return self.backbone_3d(voxels).bev()
