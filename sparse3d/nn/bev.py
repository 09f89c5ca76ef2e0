"""BEV flattening: sparse voxels scattered into a dense bird's-eye-view map whose channels
hold every height cell of every feature channel.

Both of OpenPCDet's map-to-BEV modules that our backbones stand in for produce the same
map: HeightCompression (after VoxelResBackBone8x; dense ``[B, C, D, H, W]`` viewed as
``[B, C * D, H, W]``) and PointPillarScatter3d (after DSVT; ``[C, nz * ny * nx]`` per
sample viewed as ``[C * nz, ny, nx]``). Only the coordinate order of their inputs differs.
"""

from typing import Literal

from torch import Tensor

from sparse3d.core.sparse_voxels import SparseVoxels


def scatter_to_bev(voxels: SparseVoxels, axes: Literal["xyz", "zyx"] = "xyz") -> Tensor:
    """Dense BEV map of sparse voxels, height folded into the channels.

    Args:
        voxels: feats float [N, C] at unique coords int32 [N, 4]; with ``axes="xyz"`` the
            coords are (batch, x, y, z) on a (X, Y, Z) grid (the library's order, DSVT's
            output); with ``axes="zyx"`` they are (batch, z, y, x) on (Z, Y, X)
            (OpenPCDet's spconv order, VoxelResBackBone8x's output).
        axes: the order of the three spatial coordinates and of ``voxels.spatial_shape``.

    Returns:
        float [B, C * Z, Y, X] in the dtype of the feats: channel ``c * Z + z`` holds
        channel c of height cell z (OpenPCDet's layout); empty cells are 0.
    """
    if axes not in ("xyz", "zyx"):
        raise ValueError(f"scatter_to_bev: axes must be 'xyz' or 'zyx', got {axes!r}")
    batch, *cell = voxels.coords.long().unbind(1)  # [N] each
    if axes == "xyz":
        (nx, ny, nz), (x, y, z) = voxels.spatial_shape, cell
    else:
        (nz, ny, nx), (z, y, x) = voxels.spatial_shape, cell
    channels = voxels.feats.shape[1]
    # Channels-first from the start, so the scatter writes only the N occupied cells and the
    # final [B, C * Z, Y, X] is a view (no permuted copy of the whole dense grid).
    bev = voxels.feats.new_zeros(voxels.batch_size, channels, nz * ny * nx)
    bev[batch, :, (z * ny + y) * nx + x] = voxels.feats  # unique coords: no two writes meet
    return bev.view(voxels.batch_size, channels * nz, ny, nx)
