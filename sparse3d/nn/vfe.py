"""Voxel feature encoders: OpenPCDet's MeanVFE (CenterPoint) and the dynamic pillar /
voxel encoders DynPillarVFE and DynPillarVFE3D (DSVT).

MeanVFE has no parameters: a voxel's feature is the mean of its first
``max_points_per_voxel`` points (hard voxelization in input order, so shuffle the points
first if a random subset is wanted, as OpenPCDet's data processor does).

The dynamic encoders keep every point in the range (dynamic voxelization); per point they
build [point features (absolute x, y, z, then the rest), offset to the mean of its voxel's
points, offset to its voxel centre], then run PFN layers: Linear (no bias) - BatchNorm -
ReLU, followed by a max over the voxel's points, whose result is concatenated back to the
points for every layer but the last. Pillars are voxels one cell tall in z, so one class
serves both.
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sparse3d.core.segment import segment_reduce
from sparse3d.core.sparse_voxels import SparseVoxels
from sparse3d.core.voxelize import voxel_grid_shape, voxelize
from sparse3d.nn.gather import GatherPlan, gather_rows
from sparse3d.nn.linear import Linear
from sparse3d.nn.norm import SparseBatchNorm1d


class MeanVFE(nn.Module):
    """Mean voxel feature encoder (no parameters, so no state-dict entries).

    Args:
        point_channels: D, columns per point (x, y, z first), e.g. 5 for nuScenes.
        pc_range: [x0, y0, z0, x1, y1, z1], metres.
        voxel_size: [vx, vy, vz], metres.
        max_points_per_voxel: points of a voxel averaged, in input order (OpenPCDet: 10).
    """

    def __init__(self, point_channels: int, pc_range: Sequence[float], voxel_size: Sequence[float], max_points_per_voxel: int = 10):
        super().__init__()
        if point_channels < 3 or max_points_per_voxel < 1:
            raise ValueError(f"MeanVFE: need point_channels >= 3 and max_points_per_voxel >= 1, got {point_channels}, {max_points_per_voxel}")
        self.point_channels = point_channels
        self.pc_range = [float(v) for v in pc_range]
        self.voxel_size = [float(v) for v in voxel_size]
        self.max_points_per_voxel = max_points_per_voxel
        self.grid_shape = voxel_grid_shape(self.pc_range, self.voxel_size)

    def forward(self, points: Tensor, batch_size: int, batch: Tensor | None = None) -> SparseVoxels:
        """Voxel means of a batched point cloud.

        Args:
            points: float [P, D] in the LiDAR frame, columns x, y, z, then features.
            batch_size: B.
            batch: int32 [P] sample of each point in [0, B), or None when B == 1.

        Returns:
            SparseVoxels with coords (batch, x, y, z) on ``grid_shape`` and feats [V, D];
            points outside ``pc_range`` are dropped.
        """
        _check_points(self, points, batch_size, batch)
        vox = voxelize(points, self.pc_range, self.voxel_size, "mean", self.max_points_per_voxel, batch)
        return vox.to_voxels(batch_size)


class DynamicVFE(nn.Module):
    """Dynamic voxel feature encoder.

    Args:
        point_channels: D, columns per point (x, y, z first), e.g. 5 for nuScenes
            (x, y, z, intensity, time lag).
        filters: PFN widths, e.g. (128, 128); every layer but the last outputs half its
            width per point and concatenates the voxel max.
        pc_range: [x0, y0, z0, x1, y1, z1], metres.
        voxel_size: [vx, vy, vz], metres (vz = the z extent for pillars).

    Examples:
        >>> vfe = DynamicVFE(4, (32, 32), [-8, -8, -3, 8, 8, 3], [0.5, 0.5, 6])
        >>> vfe(torch.rand(100, 4) * 6 - 3, batch_size=1).feats.shape[1]
        32
    """

    def __init__(self, point_channels: int, filters: Sequence[int], pc_range: Sequence[float], voxel_size: Sequence[float]):
        super().__init__()
        if point_channels < 3 or not filters:
            raise ValueError(f"DynamicVFE: need point_channels >= 3 and at least one filter, got {point_channels}, {filters}")
        self.pc_range = [float(v) for v in pc_range]
        self.voxel_size = [float(v) for v in voxel_size]
        self.grid_shape = voxel_grid_shape(self.pc_range, self.voxel_size)
        self.point_channels = point_channels
        widths = [point_channels + 6, *filters]
        self.linears = nn.ModuleList()
        self.norms = nn.ModuleList()
        for i in range(len(filters)):
            last = i == len(filters) - 1
            out = widths[i + 1] if last else widths[i + 1] // 2
            self.linears.append(Linear(widths[i], out, bias=False))
            self.norms.append(SparseBatchNorm1d(out, eps=1e-3, momentum=0.01))

    def forward(self, points: Tensor, batch_size: int, batch: Tensor | None = None) -> SparseVoxels:
        """Encodes a batched point cloud.

        Args:
            points: float [P, D] in the LiDAR frame, columns x, y, z, then features.
            batch_size: B.
            batch: int32 [P] sample of each point in [0, B), or None when B == 1.

        Returns:
            SparseVoxels with coords (batch, x, y, z) on ``grid_shape`` and feats [V, filters[-1]].
        """
        _check_points(self, points, batch_size, batch)
        vox = voxelize(points[:, :3], self.pc_range, self.voxel_size, reduce="mean", batch=batch)
        inside = vox.point_to_voxel >= 0
        pts, voxel_of = points[inside], vox.point_to_voxel[inside].long()
        xyz = pts[:, :3]
        size = xyz.new_tensor(self.voxel_size)
        centres = (vox.coords[:, 1:].to(xyz.dtype) + 0.5) * size + xyz.new_tensor(self.pc_range[:3])
        x = torch.cat([pts, xyz - vox.feats[voxel_of], xyz - centres[voxel_of]], 1)
        # Points grouped by voxel (stable, so input order inside a voxel) for segment max.
        order = torch.sort(voxel_of, stable=True).indices
        offsets = torch.cat([vox.num_points.new_zeros(1), vox.num_points.cumsum(0)])
        # Each voxel's max read back to its points; the backward sums over a voxel's points
        # in a fixed order (autograd's index backward does not).
        to_points = GatherPlan.build(voxel_of, vox.coords.shape[0])
        for i, (linear, norm) in enumerate(zip(self.linears, self.norms)):
            x = torch.relu(norm(linear(x)))
            pooled = segment_reduce(x[order], offsets, "max")  # [V, C]
            if i < len(self.linears) - 1:
                x = torch.cat([x, gather_rows(pooled, to_points)], 1)
        return SparseVoxels(vox.coords, pooled, self.grid_shape, batch_size, check=False)


def _check_points(vfe: MeanVFE | DynamicVFE, points: Tensor, batch_size: int, batch: Tensor | None) -> None:
    name = type(vfe).__name__
    if points.dim() != 2 or points.shape[1] != vfe.point_channels:
        raise ValueError(f"{name}: points must be [P, {vfe.point_channels}], got {list(points.shape)}")
    if batch is not None and batch.numel() and int(batch.max()) >= batch_size:
        raise ValueError(f"{name}: batch indices must lie in [0, {batch_size}), got max {int(batch.max())}")
