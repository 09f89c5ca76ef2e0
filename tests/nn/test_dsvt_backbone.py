"""DSVT pooling, encoders and the published configurations."""

import pytest
import torch
from nn.dsvt_cases import random_voxels
from torch import nn

from sparse3d.nn.dsvt import DSVT, DynamicVFE, dsvt_preset, scatter_to_bev
from sparse3d.nn.dsvt.pooling import AttentionPool3d
from sparse3d.synthetic.lidar import SpinningLidarConfig, simulate_sweeps, street_scene


def lidar_points(azimuth_steps: int = 1084) -> torch.Tensor:
    """float32 [P, 5] (x, y, z, intensity, time lag 0) of one simulated street sweep."""
    sweep = simulate_sweeps(street_scene(seed=0), num_sweeps=1, config=SpinningLidarConfig(azimuth_steps=azimuth_steps))
    return torch.from_numpy(sweep)


def test_dsvt_p_nuscenes_forward_backward_on_lidar_scene():
    torch.manual_seed(0)
    config = dsvt_preset("dsvt_p_nuscenes")
    assert config.grid_shape == (360, 360, 1)
    vfe = DynamicVFE(config.point_channels, config.vfe_filters, config.pc_range, config.voxel_size)
    backbone = DSVT(config)
    points = lidar_points()
    pillars = vfe(points, batch_size=1)
    assert pillars.num_voxels > 1000
    bev = scatter_to_bev(backbone(pillars))
    assert bev.shape == (1, 128, 360, 360)
    occupied = (bev != 0).any(1)[0]  # [Y, X]
    assert int(occupied.sum()) == pillars.num_voxels
    c = pillars.coords.long()
    assert bool(occupied[c[:, 2], c[:, 1]].all())
    (bev * torch.randn_like(bev)).sum().backward()
    for name, p in [*vfe.named_parameters(), *backbone.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_dsvt_v_waymo_stages_pool_z_to_one():
    torch.manual_seed(1)
    config = dsvt_preset("dsvt_v_waymo")
    assert config.grid_shape == (468, 468, 32)
    voxels = random_voxels(2, 200, config.grid_shape, config.channels, batch_size=2)
    out = DSVT(config)(voxels)
    assert out.spatial_shape == (468, 468, 1)
    expected_sites = torch.unique(voxels.coords[:, :3], dim=0)
    assert torch.equal(out.coords[:, :3], expected_sites) and bool((out.coords[:, 3] == 0).all())


def test_attention_pool_matches_per_group_multihead_attention():
    torch.manual_seed(2)
    voxels = random_voxels(3, 90, (6, 5, 8), 8, dtype=torch.float64)
    pool = AttentionPool3d(8, (1, 2, 4), num_heads=2).double()
    out = pool(voxels)
    assert out.spatial_shape == (6, 3, 2)
    mha = nn.MultiheadAttention(8, 2, batch_first=True, dtype=torch.float64)
    mha.load_state_dict({"in_proj_weight": pool.in_proj.weight, "in_proj_bias": pool.in_proj.bias,
                         "out_proj.weight": pool.out_proj.weight, "out_proj.bias": pool.out_proj.bias})
    coords = voxels.coords.tolist()
    for row, (b, x, y, z) in enumerate(out.coords.tolist()):
        slots = torch.zeros(8, 8, dtype=torch.float64)  # empty offsets stay zero features
        for i, (vb, vx, vy, vz) in enumerate(coords):
            if (vb, vx // 1, vy // 2, vz // 4) == (b, x, y, z):
                slots[(vy % 2) * 4 + vz % 4] = voxels.feats[i]
        query = slots.max(0).values[None, None]
        att = mha(query, (slots + pool.pos_embedding)[None], slots[None], need_weights=False)[0]
        want = pool.norm(att + query)[0, 0]
        torch.testing.assert_close(out.feats[row], want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("voxel_size", [[2.0, 2.0, 4.0], [2.0, 2.0, 1.0]], ids=["pillars", "voxels"])
def test_dynamic_vfe_matches_per_voxel_loop(voxel_size):
    torch.manual_seed(3)
    pc_range = [-4.0, -4.0, -2.0, 4.0, 4.0, 2.0]
    points = torch.rand(300, 4, dtype=torch.float64) * torch.tensor([10.0, 10.0, 5.0, 1.0]) - torch.tensor([5.0, 5.0, 2.5, 0.0])
    vfe = DynamicVFE(4, (8, 6), pc_range, voxel_size).double().eval()
    for norm in vfe.norms:  # non-trivial running statistics
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
    out = vfe(points, batch_size=1)
    lower, size = torch.tensor(pc_range[:3], dtype=torch.float64), torch.tensor(voxel_size, dtype=torch.float64)
    cell = ((points[:, :3] - lower) / size).floor().long()
    inside = ((cell >= 0) & (cell < torch.tensor(vfe.grid_shape))).all(1)
    assert out.num_voxels == len({tuple(c) for c in cell[inside].tolist()})
    for row, (_, x, y, z) in enumerate(out.coords.tolist()):
        mine = points[inside & (cell == torch.tensor([x, y, z])).all(1)]
        centre = (torch.tensor([x, y, z], dtype=torch.float64) + 0.5) * size + lower
        feats = torch.cat([mine, mine[:, :3] - mine[:, :3].mean(0), mine[:, :3] - centre], 1)
        h = torch.relu(vfe.norms[0](vfe.linears[0](feats)))
        h = torch.cat([h, h.max(0).values.expand_as(h)], 1)
        want = torch.relu(vfe.norms[1](vfe.linears[1](h))).max(0).values
        torch.testing.assert_close(out.feats[row], want, rtol=1e-10, atol=1e-10)


def test_dynamic_vfe_rejects_wrong_point_width():
    vfe = DynamicVFE(5, (8,), [-4, -4, -2, 4, 4, 2], [2, 2, 4])
    with pytest.raises(ValueError, match=r"points must be \[P, 5\], got \[10, 4\]"):
        vfe(torch.zeros(10, 4), batch_size=1)


def test_training_a_tiny_dsvt_lowers_the_loss():
    """VFE + DSVT + linear head regress a per-pillar target; the loss must fall."""
    torch.manual_seed(4)
    from nn.dsvt_cases import tiny_voxel_config

    config = tiny_voxel_config()
    vfe = DynamicVFE(4, config.vfe_filters, config.pc_range, config.voxel_size)
    model = nn.ModuleList([vfe, DSVT(config), nn.Linear(config.channels, 1)])
    points = torch.rand(200, 4) * torch.tensor([12.0, 10.0, 4.0, 1.0])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(10):
        out = model[1](model[0](points, batch_size=1))
        target = (out.coords[:, 1:3].float() - 5.0).norm(dim=1, keepdim=True) / 5.0  # distance to the grid centre
        loss = nn.functional.mse_loss(model[2](out.feats), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
