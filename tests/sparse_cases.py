"""Random sparse voxel inputs shared by the core and nn sparse-conv tests."""

import torch
from torch import nn

from sparse3d.core.sparse_voxels import SparseVoxels

ENCODER_GRID = (64, 48, 40)
"""(x, y, z) input grid of the encoder tests; z = 40 as nuScenes, so every stage keeps its depth."""


def random_coords(seed: int, shape: tuple[int, int, int], batch_size: int, density: float) -> torch.Tensor:
    """int32 [N, 4] unique (batch, c0, c1, c2) sites, each cell active with prob. density,
    in a shuffled order (kernels must not rely on sorted input)."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch_size, *shape, generator=gen) < density
    coords = mask.nonzero().int()
    return coords[torch.randperm(coords.shape[0], generator=gen)].contiguous()


def conv_case(seed: int, n: int, m: int, k: int, cin: int, cout: int, dtype=torch.float64, hit: float = 0.3):
    """feats [n, cin] and weight [k, cin, cout] (both requiring grad), and a random kernel
    map [m, k] whose taps hit a random input with probability `hit`; like every conv map,
    an (input, tap) pair is used by at most one output."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, cin, generator=gen, dtype=dtype, requires_grad=True)
    weight = torch.randn(k, cin, cout, generator=gen, dtype=dtype, requires_grad=True)
    nbr = torch.full((m, k), -1, dtype=torch.int32)
    for tap in range(k):
        rows = torch.randperm(n, generator=gen)[: min(n, m)]
        owners = torch.randperm(m, generator=gen)[: rows.numel()]
        keep = torch.rand(rows.numel(), generator=gen) < hit
        nbr[owners[keep], tap] = rows[keep].int()
    return feats, weight, nbr


def random_voxels(
    seed: int,
    shape: tuple[int, int, int] = (7, 8, 9),
    batch_size: int = 2,
    density: float = 0.2,
    channels: int = 3,
    dtype: torch.dtype = torch.float64,
) -> SparseVoxels:
    """SparseVoxels on random sites with standard-normal features float [N, channels]."""
    coords = random_coords(seed, shape, batch_size, density)
    gen = torch.Generator().manual_seed(seed + 1)
    feats = torch.randn(coords.shape[0], channels, generator=gen, dtype=dtype)
    return SparseVoxels(coords, feats, shape, batch_size)


def sort_by_coords(coords: torch.Tensor, feats: torch.Tensor, shape) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows reordered by (batch, c0, c1, c2), to compare libraries that order sites differently."""
    from sparse3d.core.coords import coord_keys

    order = coord_keys(coords, shape).argsort()
    return coords[order], feats[order]


def encoder_scene(seed: int = 0, batch_size: int = 2) -> SparseVoxels:
    """(batch, x, y, z) voxels on :data:`ENCODER_GRID`: a dense-ish ground slab at z = 10, 11
    plus random clutter; feats float32 [N, 5]."""
    coords = random_coords(seed, ENCODER_GRID, batch_size, 0.004)
    ground = random_coords(seed + 1, (ENCODER_GRID[0], ENCODER_GRID[1], 2), batch_size, 0.3)
    ground[:, 3] += 10
    keys = torch.unique(torch.cat([coords, ground]), dim=0)
    feats = torch.randn(keys.shape[0], 5, generator=torch.Generator().manual_seed(seed))
    return SparseVoxels(keys.contiguous(), feats, ENCODER_GRID, batch_size)


def randomise_batch_norm(module: nn.Module, seed: int) -> None:
    """Random running statistics and affine parameters for every BatchNorm1d of ``module``
    (in eval mode, batch norm is then a fixed, non-trivial affine map)."""
    gen = torch.Generator().manual_seed(seed)
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm1d):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen) * 0.1)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.weight.data.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.bias.data.copy_(torch.randn(bn.num_features, generator=gen) * 0.1)


def assert_encoder_matches_spconv(ours: nn.Module, reference: nn.Module, x: SparseVoxels, spconv, rtol: float,
                                  atol: float, grad_rtol: float, grad_atol: float) -> None:
    """Our VoxelResBackBone8x and spconv's (same weights) on the (batch, x, y, z) voxels
    ``x``: the same output sites, features within (rtol, atol x the largest feature), and,
    for one random loss of the sorted rows, every parameter's gradient within (grad_rtol,
    grad_atol x the largest gradient of the network)."""
    zyx = ours.to_zyx(x)
    out = ours(x).encoded
    t = reference(spconv.SparseConvTensor(zyx.feats, zyx.coords, list(zyx.spatial_shape), zyx.batch_size))
    assert list(t.spatial_shape) == list(out.spatial_shape)
    c_ours, f_ours = sort_by_coords(out.coords, out.feats, out.spatial_shape)
    c_sp, f_sp = sort_by_coords(t.indices, t.features, out.spatial_shape)
    assert c_ours.shape[0] > 0 and torch.equal(c_ours.int(), c_sp.int())
    torch.testing.assert_close(f_ours, f_sp, rtol=rtol, atol=atol * f_sp.abs().max().item())
    generator = torch.Generator().manual_seed(5)
    weights = torch.randn(f_ours.shape, generator=generator, dtype=f_ours.dtype).to(f_ours.device)
    (f_ours * weights).sum().backward()
    (f_sp * weights).sum().backward()
    ref_params = dict(reference.named_parameters())
    scale = max(p.grad.abs().max().item() for p in ref_params.values())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, ref_params[name].grad, rtol=grad_rtol, atol=grad_atol * scale, msg=name)
