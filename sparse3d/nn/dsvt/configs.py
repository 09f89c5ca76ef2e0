"""DSVT configurations: the published DSVT-P (nuScenes) and DSVT-V (Waymo) backbones."""

from dataclasses import dataclass

from sparse3d.core.coords import Triple
from sparse3d.core.voxelize import voxel_grid_shape


@dataclass
class DSVTStageConfig:
    """One stage: blocks sharing one window / set partition."""

    window: Triple
    """Window size (x, y, z) in cells for shift 0 (shift 1 uses window * hybrid_factor)."""
    shifts: tuple[Triple, Triple]
    """Window shift (x, y, z) in cells for shift 0 and shift 1; z is forced to 0 when the
    window spans the whole z range."""
    set_size: int
    """Slots per set S."""
    num_blocks: int
    """DSVT blocks (two attention layers each); block b uses shift b % 2."""
    downsample: Triple | None = None
    """Attention-pooling stride (x, y, z) applied after this stage; None for the last stage."""


@dataclass
class DSVTConfig:
    """A DSVT backbone from points to BEV: dynamic VFE, DSVT stages, BEV scatter."""

    pc_range: tuple[float, float, float, float, float, float]
    """Point-cloud range [x0, y0, z0, x1, y1, z1], metres (LiDAR frame)."""
    voxel_size: tuple[float, float, float]
    """Voxel size (x, y, z), metres; a pillar's z size spans the range."""
    point_channels: int
    """Columns per input point (x, y, z first)."""
    vfe_filters: tuple[int, ...]
    """PFN widths of the dynamic VFE; the last must equal ``channels``."""
    channels: int
    """Attention width C."""
    num_heads: int
    """Attention heads."""
    ffn_channels: int
    """Hidden width of each FFN."""
    stages: tuple[DSVTStageConfig, ...]
    """The stages, with attention pooling between consecutive ones."""
    hybrid_factor: Triple = (1, 1, 1)
    """Shift-1 windows are ``window * hybrid_factor`` (Waymo: 2 x 2 in x, y)."""
    pool_heads: int = 8
    """Heads of the attention pooling."""

    @property
    def grid_shape(self) -> Triple:
        """Voxel grid (X, Y, Z) derived from ``pc_range`` and ``voxel_size``."""
        return voxel_grid_shape(self.pc_range, self.voxel_size)

    def __post_init__(self):
        if self.vfe_filters[-1] != self.channels:
            raise ValueError(f"DSVTConfig: vfe_filters[-1] ({self.vfe_filters[-1]}) must equal channels ({self.channels})")
        if self.channels % self.num_heads or self.channels % self.pool_heads:
            raise ValueError(
                f"DSVTConfig: channels {self.channels} must be divisible by num_heads {self.num_heads} "
                f"and pool_heads {self.pool_heads}"
            )
        for i, stage in enumerate(self.stages):
            if (stage.downsample is None) != (i == len(self.stages) - 1):
                raise ValueError(f"DSVTConfig: stage {i} must {'not ' if i == len(self.stages) - 1 else ''}set downsample")


def dsvt_p_nuscenes() -> DSVTConfig:
    """DSVT-P for nuScenes (dsvt_plain_1f_onestage_nusences.yaml): 0.3 m pillars on a
    360 x 360 grid, one stage of 4 blocks, set size 90, 30 x 30 windows shifted by 15."""
    return DSVTConfig(
        pc_range=(-54.0, -54.0, -5.0, 54.0, 54.0, 3.0),
        voxel_size=(0.3, 0.3, 8.0),
        point_channels=5,
        vfe_filters=(128, 128),
        channels=128,
        num_heads=8,
        ffn_channels=256,
        stages=(DSVTStageConfig(window=(30, 30, 1), shifts=((0, 0, 0), (15, 15, 0)), set_size=90, num_blocks=4),),
    )


def dsvt_v_waymo() -> DSVTConfig:
    """DSVT-V for Waymo (dsvt_3D_1f_onestage.yaml): 0.32 x 0.32 x 0.1875 m voxels on a
    468 x 468 x 32 grid, 4 stages of one block, set size 48, 12 x 12 windows (24 x 24 when
    shifted), z pooled by 4, 4 and 2 between stages."""
    shifts = ((0, 0, 0), (6, 6, 0))
    z_windows = (32, 8, 2, 1)
    pools = ((1, 1, 4), (1, 1, 4), (1, 1, 2), None)
    return DSVTConfig(
        pc_range=(-74.88, -74.88, -2.0, 74.88, 74.88, 4.0),
        voxel_size=(0.32, 0.32, 0.1875),
        point_channels=5,
        vfe_filters=(192, 192),
        channels=192,
        num_heads=8,
        ffn_channels=384,
        stages=tuple(
            DSVTStageConfig(window=(12, 12, wz), shifts=shifts, set_size=48, num_blocks=1, downsample=pool)
            for wz, pool in zip(z_windows, pools)
        ),
        hybrid_factor=(2, 2, 1),
    )
