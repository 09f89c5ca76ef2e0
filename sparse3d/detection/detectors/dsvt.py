"""DSVT-P (DSVT's ``dsvt_plain_1f_onestage_nusences``) with CenterPoint's head: dynamic
pillar VFE -> one DSVT stage of rotated-set blocks -> BEV scatter -> BaseBEVResBackbone ->
CenterHead, under OpenPCDet's top-level module names (``vfe``, ``backbone_3d``,
``backbone_2d``, ``dense_head``; the scatter, OpenPCDet's ``map_to_bev_module``
PointPillarScatter3d, holds no parameters).

The reference puts a TransFusion head (200 query proposals, Hungarian assignment, IoU
rescoring) on the BEV map; this detector uses the same :class:`CenterHead` as
:class:`sparse3d.detection.detectors.centerpoint.CenterPoint` instead (six task groups,
Gaussian heatmaps, per-head rotated NMS), at the reference's feature-map stride 2, with
DSVT's code weights (the 0.2 on velocity) and its head convs without bias before batch norm.
The head has no IoU branch, so scores are not IoU-rectified.

The parameter names below ``vfe`` and ``backbone_3d`` are sparse3d's
(:class:`sparse3d.nn.vfe.DynamicVFE`, :class:`sparse3d.nn.dsvt.DSVT`), not DSVT's;
``backbone_2d`` and ``dense_head`` follow OpenPCDet's.

Reference: Wang et al., "DSVT: Dynamic Sparse Voxel Transformer with Rotated Sets",
CVPR 2023 (https://arxiv.org/abs/2301.06051).
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import Tensor

from sparse3d.core.coords import Triple
from sparse3d.core.sparse_voxels import SparseVoxels
from sparse3d.core.voxelize import voxel_grid_shape
from sparse3d.data.nuscenes.classes import DETECTION_NAMES
from sparse3d.detection.detectors.centerpoint import CenterHeadDetector
from sparse3d.detection.heads.center_head import CenterHead, CenterHeadConfig
from sparse3d.detection.necks.bev_backbone import BevBackboneConfig
from sparse3d.detection.necks.bev_res_backbone import BaseBEVResBackbone
from sparse3d.detection.post_process import NmsConfig
from sparse3d.detection.targets import BevGrid
from sparse3d.engine.config import at_least, check_ranges, positive
from sparse3d.nn.bev import scatter_to_bev
from sparse3d.nn.dsvt import DSVT, DSVTConfig, DSVTStageConfig
from sparse3d.nn.vfe import DynamicVFE


def _dsvt_bev() -> BevBackboneConfig:
    return BevBackboneConfig(layer_nums=(1, 2, 2), layer_strides=(1, 2, 2), num_filters=(128, 128, 256),
                             upsample_strides=(0.5, 1, 2), num_upsample_filters=(128, 128, 128))


def _dsvt_head() -> CenterHeadConfig:
    return CenterHeadConfig(use_bias_before_norm=False, code_weights=(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2))


@dataclass
class DsvtDetectorConfig:
    """The network (DSVT-P's nuScenes values by default). The point-cloud range and the
    classes are the data's (:class:`sparse3d.detection.dataset.DetectionDataConfig`), given
    to :class:`DsvtDetector` as OpenPCDet gives them to its models."""

    voxel_size: tuple[float, float, float] = field(default=(0.3, 0.3, 8.0), metadata=positive())
    """Pillar size, metres; with the point-cloud range it sets the grid (360 x 360 x 1 on
    nuScenes' [-54, 54] x [-54, 54] x [-5, 3] m: one pillar spans the z range)."""
    point_features: int = field(default=5, metadata=at_least(3))
    """Columns per point: x, y, z, intensity, time lag."""
    vfe_filters: tuple[int, ...] = field(default=(128, 128), metadata=at_least(2))
    """PFN widths of the dynamic pillar VFE (DynPillarVFE NUM_FILTERS); the last is the
    transformer's width C."""
    num_heads: int = field(default=8, metadata=at_least(1))
    """Attention heads; C must be divisible by it."""
    ffn_channels: int = field(default=256, metadata=at_least(1))
    """Hidden width of each attention layer's FFN."""
    window: Triple = field(default=(30, 30, 1), metadata=at_least(1))
    """Window (x, y, z) in pillars."""
    window_shift: Triple = field(default=(15, 15, 0), metadata=at_least(0))
    """Shift (x, y, z) in pillars of the windows of every other block (shifts_list[1])."""
    set_size: int = field(default=90, metadata=at_least(1))
    """Pillars per set (set_info[0][0])."""
    num_blocks: int = field(default=4, metadata=at_least(1))
    """DSVT blocks (two rotated-set attention layers each; block b uses shift b % 2)."""
    bev: BevBackboneConfig = field(default_factory=_dsvt_bev)
    """The residual 2D backbone on the scattered BEV map; its stride is the head's
    feature-map stride in pillars (2 by default: 180 x 180 cells of 0.6 m)."""
    head: CenterHeadConfig = field(default_factory=_dsvt_head)
    """The dense head: task groups, targets, losses, decoding (CenterPoint's, but with DSVT's
    code weights, 0.2 on velocity, and no conv bias before batch norm)."""
    nms: NmsConfig = field(default_factory=NmsConfig)
    """Per-head suppression of the decoded boxes."""

    def __post_init__(self) -> None:
        check_ranges(self)
        if not self.vfe_filters or self.vfe_filters[-1] % self.num_heads:
            raise ValueError(f"DsvtDetectorConfig: vfe_filters[-1] (the width, {list(self.vfe_filters)}) must be "
                             f"divisible by num_heads ({self.num_heads})")

    def backbone(self, pc_range: Sequence[float]) -> DSVTConfig:
        """The DSVT backbone's config on ``pc_range`` [x0, y0, z0, x1, y1, z1] (metres)."""
        stage = DSVTStageConfig(window=self.window, shifts=((0, 0, 0), self.window_shift), set_size=self.set_size,
                                num_blocks=self.num_blocks)
        return DSVTConfig(pc_range=tuple(pc_range), voxel_size=self.voxel_size, point_channels=self.point_features,
                          vfe_filters=self.vfe_filters, channels=self.vfe_filters[-1], num_heads=self.num_heads,
                          ffn_channels=self.ffn_channels, stages=(stage,), pool_heads=self.num_heads)  # one stage: no pooling


class DsvtDetector(CenterHeadDetector):
    """Points to CenterHead predictions, losses and boxes through DSVT-P.

    Args:
        config: the network.
        pc_range: point-cloud range [x0, y0, z0, x1, y1, z1], metres (LiDAR frame); points
            outside it are dropped. Its x and y extents over the pillar size must be
            multiples of the BEV backbone's total downsampling (e.g. 360 pillars, a multiple of 4).
        class_names: the classes; labels are indices into this sequence.

    Attributes:
        grid: the head's feature map (pillars x ``config.bev.stride``).

    Examples:
        >>> model = DsvtDetector(DsvtDetectorConfig(), (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0))
        >>> model.grid.shape
        (180, 180)
    """

    def __init__(self, config: DsvtDetectorConfig, pc_range: Sequence[float], class_names: Sequence[str] = DETECTION_NAMES):
        super().__init__()
        self.config, self.class_names = config, tuple(class_names)
        pc_range = tuple(float(v) for v in pc_range)
        nx, ny, nz = voxel_grid_shape(pc_range, config.voxel_size)
        multiple = math.lcm(math.prod(config.bev.layer_strides), config.bev.stride)
        if nx % multiple or ny % multiple:
            raise ValueError(
                f"DsvtDetector: the {nx} x {ny} pillar grid of range {list(pc_range)} at {list(config.voxel_size)} m "
                f"must be a multiple of {multiple} (the BEV backbone's downsampling) in x and y"
            )
        backbone = config.backbone(pc_range)
        self.vfe = DynamicVFE(config.point_features, config.vfe_filters, pc_range, config.voxel_size)
        self.backbone_3d = DSVT(backbone)
        self.backbone_2d = BaseBEVResBackbone(config.bev, backbone.channels * nz)
        self.dense_head = CenterHead(config.head, config.bev.out_channels, self.class_names)
        self.grid = BevGrid(pc_range, tuple(config.voxel_size), config.bev.stride)

    def encode(self, voxels: SparseVoxels) -> Tensor:
        """[B, C * Z, Y, X]: DSVT-P's pillar features scattered onto the BEV grid."""
        return scatter_to_bev(self.backbone_3d(voxels))
