"""Parity with spconv 2.x's CPU build at 1 thread (it races at 2, see
reference/sparse_conv.md §0): same KRSC weights, same output sites, same forward values
and gradients, and SparseConvTensor converters."""

import pytest
import torch
from sparse_cases import random_voxels, sort_by_coords

from sparse3d.nn.conv import (
    SparseConv2d,
    SparseConv3d,
    SparseConvTranspose3d,
    SparseInverseConv2d,
    SparseInverseConv3d,
    SubMConv2d,
    SubMConv3d,
)
from sparse3d.nn.spconv_compat import from_spconv, patch_spconv_cpu_stream, to_spconv

spconv = pytest.importorskip("spconv.pytorch")


@pytest.fixture(autouse=True)
def one_thread():
    patch_spconv_cpu_stream()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _scene(seed=0, channels=16):
    return random_voxels(seed, shape=(12, 40, 40), batch_size=2, density=0.05, channels=channels, dtype=torch.float32)


def _copy_params(src, dst):
    dst.load_state_dict(src.state_dict())


def _compare(ours, theirs, x, cotangent_seed=0):
    """Forward on both, compare sites and values, then features and weight gradients."""
    feats = x.feats.detach().requires_grad_(True)
    feats_sp = x.feats.detach().requires_grad_(True)
    y = ours(x.replace_feats(feats))
    t = theirs(spconv.SparseConvTensor(feats_sp, x.coords, list(x.spatial_shape), x.batch_size))
    assert list(t.spatial_shape) == list(y.spatial_shape)
    c_ours, f_ours = sort_by_coords(y.coords, y.feats, y.spatial_shape)
    c_sp, f_sp = sort_by_coords(t.indices, t.features, y.spatial_shape)
    assert torch.equal(c_ours, c_sp)
    torch.testing.assert_close(f_ours, f_sp, rtol=1e-5, atol=1e-5)
    # One cotangent per site, looked up by site for both orders.
    gen = torch.Generator().manual_seed(cotangent_seed)
    v_sorted = torch.randn(f_ours.shape, generator=gen)
    _, order_ours = sort_by_coords(y.coords, torch.arange(y.num_voxels)[:, None], y.spatial_shape)
    _, order_sp = sort_by_coords(t.indices, torch.arange(t.indices.shape[0])[:, None], y.spatial_shape)
    v_ours, v_sp = torch.empty_like(v_sorted), torch.empty_like(v_sorted)
    v_ours[order_ours[:, 0]], v_sp[order_sp[:, 0]] = v_sorted, v_sorted
    g_ours = torch.autograd.grad(y.feats, [feats, ours.weight], v_ours)
    g_sp = torch.autograd.grad(t.features, [feats_sp, theirs.weight], v_sp)
    for a, b in zip(g_ours, g_sp):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    return y, t


@pytest.mark.parametrize("channels", [16, 32])
def test_subm_conv_matches_spconv(channels):
    theirs = spconv.SubMConv3d(channels, channels, 3, bias=False, indice_key="s")
    ours = SubMConv3d(channels, channels, 3, bias=False)
    _copy_params(theirs, ours)
    y, t = _compare(ours, theirs, _scene(channels=channels))
    assert torch.equal(y.coords, t.indices)  # SubM keeps the input order in both


@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), ((3, 1, 1), (2, 1, 1), 0), (3, 2, (0, 1, 1))])
def test_strided_conv_matches_spconv(kernel, stride, padding):
    theirs = spconv.SparseConv3d(16, 32, kernel, stride, padding, bias=False)
    ours = SparseConv3d(16, 32, kernel, stride, padding, bias=False)
    _copy_params(theirs, ours)
    _compare(ours, theirs, _scene(1))


def test_inverse_conv_matches_spconv():
    x = _scene(2)
    down_sp = spconv.SparseConv3d(16, 32, 3, 2, 1, bias=False, indice_key="d")
    up_sp = spconv.SparseInverseConv3d(32, 16, 3, indice_key="d", bias=False)
    down, up = SparseConv3d(16, 32, 3, 2, 1, bias=False, indice_key="d"), SparseInverseConv3d(32, 16, 3, indice_key="d", bias=False)
    _copy_params(down_sp, down)
    _copy_params(up_sp, up)
    y = up(down(x))
    t = up_sp(down_sp(to_spconv(x)))
    assert torch.equal(y.coords, x.coords) and torch.equal(t.indices, x.coords)
    torch.testing.assert_close(y.feats, t.features, rtol=1e-5, atol=1e-5)
    v = torch.randn_like(y.feats)
    g = torch.autograd.grad(y.feats, [down.weight, up.weight], v)
    g_sp = torch.autograd.grad(t.features, [down_sp.weight, up_sp.weight], v)
    for a, b in zip(g, g_sp):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_converters_round_trip():
    x = _scene(3)
    t = to_spconv(x)
    assert list(t.spatial_shape) == list(x.spatial_shape) and t.batch_size == x.batch_size
    back = from_spconv(t)
    assert torch.equal(back.coords, x.coords) and torch.equal(back.feats, x.feats)
    assert torch.equal(back.dense(), t.dense())


def test_2d_layers_match_spconv():
    # spconv's 2D layers on a (batch, y, x) tensor vs ours on the same plane (1, H, W).
    x = random_voxels(4, shape=(1, 40, 40), batch_size=2, density=0.15, channels=16, dtype=torch.float32)
    t = to_spconv(x, planar=True)
    assert list(t.spatial_shape) == [40, 40] and t.indices.shape[1] == 3
    back = from_spconv(t)
    assert torch.equal(back.coords, x.coords) and back.spatial_shape == x.spatial_shape
    subm_sp = spconv.SubMConv2d(16, 16, 3, bias=True, indice_key="s")
    down_sp = spconv.SparseConv2d(16, 32, 3, 2, 1, bias=False, indice_key="d")
    up_sp = spconv.SparseInverseConv2d(32, 16, 3, indice_key="d", bias=False)
    subm, down = SubMConv2d(16, 16, 3, bias=True), SparseConv2d(16, 32, 3, 2, 1, bias=False, indice_key="d")
    up = SparseInverseConv2d(32, 16, 3, indice_key="d", bias=False)
    for src, dst in ((subm_sp, subm), (down_sp, down), (up_sp, up)):
        _copy_params(src, dst)
    y = up(down(subm(x)))
    r = up_sp(down_sp(subm_sp(t)))
    assert torch.equal(from_spconv(r).coords, y.coords)
    torch.testing.assert_close(y.feats, r.features, rtol=1e-5, atol=1e-5)
    v = torch.randn_like(y.feats)
    grads = torch.autograd.grad(y.feats, [subm.weight, subm.bias, down.weight, up.weight], v)
    grads_sp = torch.autograd.grad(r.features, [subm_sp.weight, subm_sp.bias, down_sp.weight, up_sp.weight], v)
    for a, b in zip(grads, grads_sp):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), (2, 2, 0)])
def test_transposed_conv_matches_spconv(kernel, stride, padding):
    theirs = spconv.SparseConvTranspose3d(16, 8, kernel, stride, padding, bias=False)
    ours = SparseConvTranspose3d(16, 8, kernel, stride, padding, bias=False)
    _copy_params(theirs, ours)
    _compare(ours, theirs, _scene(5))
