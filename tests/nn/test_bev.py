"""scatter_to_bev: hand cases, and bit-identity with OpenPCDet's two map-to-BEV modules
(values and gradients) in both coordinate orders."""

import pytest
import torch
from sparse_cases import random_voxels

from sparse3d.core.sparse_voxels import SparseVoxels
from sparse3d.nn.bev import scatter_to_bev


def height_compression(voxels: SparseVoxels) -> torch.Tensor:
    """OpenPCDet's HeightCompression on (batch, z, y, x) voxels: dense(), then view."""
    dense = voxels.dense()  # [B, C, D, H, W]
    b, c, d, h, w = dense.shape
    return dense.view(b, c * d, h, w)


def point_pillar_scatter_3d(voxels: SparseVoxels) -> torch.Tensor:
    """OpenPCDet's PointPillarScatter3d, line for line, on (batch, z, y, x) voxels."""
    nz, ny, nx = voxels.spatial_shape
    coords, feats = voxels.coords.long(), voxels.feats
    batch_spatial_features = []
    for batch_idx in range(voxels.batch_size):
        spatial_feature = torch.zeros(feats.shape[1], nz * nx * ny, dtype=feats.dtype)
        batch_mask = coords[:, 0] == batch_idx
        this_coords = coords[batch_mask, :]
        indices = this_coords[:, 1] * ny * nx + this_coords[:, 2] * nx + this_coords[:, 3]
        spatial_feature[:, indices] = feats[batch_mask, :].t()
        batch_spatial_features.append(spatial_feature)
    return torch.stack(batch_spatial_features, 0).view(voxels.batch_size, feats.shape[1] * nz, ny, nx)


def xyz_to_zyx(voxels: SparseVoxels) -> SparseVoxels:
    """The same voxels in (batch, z, y, x) order on (Z, Y, X); feats shared (gradients flow)."""
    coords = voxels.coords[:, [0, 3, 2, 1]].contiguous()
    return SparseVoxels(coords, voxels.feats, voxels.spatial_shape[::-1], voxels.batch_size)


def test_hand_case_in_both_orders():
    coords = torch.tensor([[0, 2, 1, 0], [1, 0, 3, 1], [0, 1, 1, 1]], dtype=torch.int32)  # (batch, x, y, z)
    feats = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    voxels = SparseVoxels(coords, feats, (3, 4, 2), 2)
    want = torch.zeros(2, 4, 4, 3)  # [B, C * Z, Y, X]
    want[0, 0, 1, 2], want[0, 2, 1, 2] = 1.0, 2.0  # channel c * Z + z
    want[1, 1, 3, 0], want[1, 3, 3, 0] = 3.0, 4.0
    want[0, 1, 1, 1], want[0, 3, 1, 1] = 5.0, 6.0
    assert torch.equal(scatter_to_bev(voxels), want)
    assert torch.equal(scatter_to_bev(xyz_to_zyx(voxels), axes="zyx"), want)


@pytest.mark.parametrize("reference", [height_compression, point_pillar_scatter_3d])
@pytest.mark.parametrize("shape", [(9, 7, 4), (6, 5, 1)], ids=["voxels", "pillars"])
def test_matches_openpcdet_bit_for_bit(reference, shape):
    voxels = random_voxels(0, shape, batch_size=3, density=0.3, channels=5, dtype=torch.float32)
    voxels.feats.requires_grad_(True)
    zyx = xyz_to_zyx(voxels)
    want = reference(zyx)
    cotangent = torch.randn(want.shape, generator=torch.Generator().manual_seed(1))
    (v_want,) = torch.autograd.grad(want, voxels.feats, cotangent)
    for bev in (scatter_to_bev(voxels), scatter_to_bev(zyx, axes="zyx")):
        assert bev.shape == (3, 5 * shape[2], shape[1], shape[0])
        assert torch.equal(bev, want)
        assert torch.equal(torch.autograd.grad(bev, voxels.feats, cotangent)[0], v_want)


def test_rejects_unknown_axes():
    voxels = random_voxels(0, (3, 4, 2), channels=2)
    with pytest.raises(ValueError, match="axes must be 'xyz' or 'zyx', got 'yxz'"):
        scatter_to_bev(voxels, axes="yxz")
