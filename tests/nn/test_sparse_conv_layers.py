"""Sparse conv layers against dense torch convolutions: outputs at the active sites and
all gradients (features, weight, bias), in float64 on small grids."""

import pytest
import torch
import torch.nn.functional as F
from sparse_cases import random_voxels
from torch import nn

from sparse3d.core.sparse_voxels import SparseVoxels
from sparse3d.nn.conv import (
    SparseConv2d,
    SparseConv3d,
    SparseConvTranspose2d,
    SparseConvTranspose3d,
    SparseInverseConv2d,
    SparseInverseConv3d,
    SubMConv2d,
    SubMConv3d,
)
from sparse3d.nn.sequential import SparseSequential


def _active(x: SparseVoxels) -> torch.Tensor:
    """bool [B, 1, S0, S1, S2] mask of the active sites."""
    mask = torch.zeros(x.batch_size, 1, *x.spatial_shape, dtype=torch.bool)
    c = x.coords.long()
    mask[c[:, 0], 0, c[:, 1], c[:, 2], c[:, 3]] = True
    return mask


def _krsc_to_oidhw(weight: torch.Tensor) -> torch.Tensor:
    return weight.permute(0, 4, 1, 2, 3)


def _check_against_dense(x: SparseVoxels, layer, sparse_forward, dense_forward):
    feats = x.feats.detach().requires_grad_(True)
    x = x.replace_feats(feats)
    y = sparse_forward(x)
    dense_in = x.dense()
    ref = dense_forward(dense_in) * _active(y)  # the dense conv evaluated at y's sites only
    torch.testing.assert_close(y.dense(), ref)
    v = torch.randn_like(y.feats)
    params = [feats, layer.weight] + ([layer.bias] if layer.bias is not None else [])
    grads = torch.autograd.grad(y.feats, params, v)
    v_dense = y.replace_feats(v).dense()
    grads_ref = list(torch.autograd.grad(ref, [dense_in, layer.weight] + params[2:], v_dense))
    c = x.coords.long()
    grads_ref[0] = grads_ref[0][c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]]
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref)
    return y


@pytest.mark.parametrize("kernel,dilation", [(3, 1), ((3, 1, 5), 1), (3, 2), (1, 1)])
def test_subm_conv3d_matches_dense(kernel, dilation):
    x = random_voxels(0)
    layer = SubMConv3d(3, 4, kernel, dilation=dilation).double()
    pad = tuple(k // 2 * layer.dilation[i] for i, k in enumerate(layer.kernel_size))
    y = _check_against_dense(
        x, layer, layer, lambda d: F.conv3d(d, _krsc_to_oidhw(layer.weight), layer.bias, padding=pad, dilation=dilation)
    )
    assert torch.equal(y.coords, x.coords)


@pytest.mark.parametrize(
    "kernel,stride,padding,dilation",
    [(3, 2, 1, 1), (2, 2, 0, 1), ((3, 1, 1), (2, 1, 1), 0, 1), ((3, 3, 2), (1, 2, 2), (0, 1, 1), (2, 1, 1)), (3, 1, 0, 1)],
)
def test_sparse_conv3d_matches_dense(kernel, stride, padding, dilation):
    x = random_voxels(1)
    layer = SparseConv3d(3, 5, kernel, stride, padding, dilation, bias=True).double()
    y = _check_against_dense(
        x,
        layer,
        layer,
        lambda d: F.conv3d(d, _krsc_to_oidhw(layer.weight), layer.bias, stride=stride, padding=padding, dilation=dilation),
    )
    # Output-site rule: exactly the sites that some input reaches (dense conv of the mask).
    reach = F.conv3d(_active(x).double(), torch.ones(1, 1, *layer.kernel_size, dtype=torch.float64),
                     stride=stride, padding=padding, dilation=dilation) > 0
    assert torch.equal(_active(y), reach)
    assert y.spatial_shape == tuple(reach.shape[2:])


@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), ((3, 1, 1), (2, 1, 1), 0), (2, 2, 0)])
def test_inverse_conv3d_matches_dense_transposed_conv(kernel, stride, padding):
    x = random_voxels(2)
    down = SparseConv3d(3, 4, kernel, stride, padding, indice_key="down").double()
    up = SparseInverseConv3d(4, 3, kernel, indice_key="down").double()
    mid = down(x)
    mid = mid.replace_feats(torch.randn_like(mid.feats))
    geometry = dict(stride=down.stride, padding=down.padding)
    size = [(m - 1) * s - 2 * p + k for m, s, p, k in zip(mid.spatial_shape, down.stride, down.padding, down.kernel_size)]
    out_pad = tuple(t - s for t, s in zip(x.spatial_shape, size))
    y = _check_against_dense(
        mid,
        up,
        up,
        lambda d: F.conv_transpose3d(d, up.weight.permute(4, 0, 1, 2, 3), up.bias, output_padding=out_pad, **geometry),
    )
    assert torch.equal(y.coords, x.coords) and y.spatial_shape == x.spatial_shape


def test_inverse_conv_needs_a_registered_strided_conv():
    x = random_voxels(3)
    with pytest.raises(ValueError, match="no strided conv registered under indice_key 'nope'"):
        SparseInverseConv3d(3, 3, 3, indice_key="nope").double()(x)
    SparseConv3d(3, 4, 3, 2, 1, indice_key="k").double()(x)
    with pytest.raises(ValueError, match="not the output sites"):
        SparseInverseConv3d(3, 3, 3, indice_key="k").double()(x)
    other = SparseConv3d(3, 4, 3, 2, 0).double()(x)
    with pytest.raises(ValueError, match="already used"):
        SparseConv3d(3, 4, 3, 2, 0, indice_key="k").double()(x)
    with pytest.raises(ValueError, match="kernel"):
        SparseInverseConv3d(4, 3, 2, indice_key="k").double()(SparseConv3d(3, 4, 3, 2, 1, indice_key="k").double()(x))
    assert other.num_voxels > 0


def test_kernel_maps_are_cached_per_coordinate_set_and_geometry():
    x = random_voxels(4)
    a, b = SubMConv3d(3, 3, 3).double(), SubMConv3d(3, 3, 3).double()
    y = b(a(x))
    assert len(x.cache.kernel_maps) == 1 and y.coord_set == x.coord_set
    SubMConv3d(3, 3, 5).double()(y)
    assert len(x.cache.kernel_maps) == 2
    down = SparseConv3d(3, 3, 3, 2, 1).double()
    z1, z2 = down(x), down(y)
    assert z1.coord_set == z2.coord_set and len(x.cache.kernel_maps) == 3


def test_sparse_sequential_applies_plain_modules_to_features():
    x = random_voxels(5, dtype=torch.float32)
    net = SparseSequential(SubMConv3d(3, 8, 3, bias=False), nn.BatchNorm1d(8), nn.ReLU())
    y = net(x)
    ref = torch.relu(net[1](net[0](x).feats))
    torch.testing.assert_close(y.feats, ref)
    assert list(dict(net.named_parameters())) == ["0.weight", "1.weight", "1.bias"]
    assert net[0].weight.shape == (8, 3, 3, 3, 3)  # KRSC


def test_conv_with_empty_output_and_empty_input():
    coords = torch.tensor([[0, 1, 1, 1]], dtype=torch.int32)
    x = SparseVoxels(coords, torch.ones(1, 2), (4, 4, 4), 1)
    y = SparseConv3d(2, 3, 1, stride=2, padding=0)(x)  # an odd site reaches no output
    assert y.num_voxels == 0 and y.feats.shape == (0, 3) and y.spatial_shape == (2, 2, 2)
    z = SubMConv3d(3, 4, 3)(y)
    assert z.feats.shape == (0, 4)
    z.feats.sum().backward()
    with pytest.raises(ValueError, match="empty axis"):
        SparseConv3d(2, 3, 5, stride=1, padding=0)(x)


def _plane(seed: int) -> SparseVoxels:
    """Voxels on a 1 x 11 x 13 plane, float64, 3 channels."""
    return random_voxels(seed, shape=(1, 11, 13), density=0.3)


def _dense_2d(conv2d):
    """A dense 2D conv applied to a [B, C, 1, H, W] grid (the plane axis carried along)."""
    return lambda d: conv2d(d[:, :, 0])[:, :, None]


def test_2d_layers_match_dense_conv2d():
    x = _plane(0)
    subm = SubMConv2d(3, 4, (3, 5), dilation=(1, 2)).double()
    w = subm.weight.permute(0, 3, 1, 2)  # [Cout, kH, kW, Cin] -> OIHW
    y = _check_against_dense(x, subm, subm, _dense_2d(lambda d: F.conv2d(d, w, subm.bias, padding=(1, 4), dilation=(1, 2))))
    assert torch.equal(y.coords, x.coords)
    down = SparseConv2d(3, 5, 3, stride=2, padding=1, indice_key="d").double()
    wd = down.weight.permute(0, 3, 1, 2)
    y = _check_against_dense(x, down, down, _dense_2d(lambda d: F.conv2d(d, wd, down.bias, stride=2, padding=1)))
    assert y.spatial_shape == (1, 6, 7)
    up = SparseInverseConv2d(5, 3, 3, indice_key="d").double()
    z = up(y)
    assert torch.equal(z.coords, x.coords) and z.spatial_shape == x.spatial_shape
    # The inverse conv is the transposed conv, read back at the strided conv's input sites.
    ref = F.conv_transpose2d(y.dense()[:, :, 0], up.weight.permute(3, 0, 1, 2), up.bias, stride=2, padding=1,
                             output_padding=(0, 0))[:, :, None] * _active(x)
    torch.testing.assert_close(z.dense(), ref[..., : x.spatial_shape[1], : x.spatial_shape[2]])


def test_transposed_conv2d_matches_dense_conv_transpose2d():
    x = _plane(1)
    layer = SparseConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1).double()
    w = layer.weight.permute(3, 0, 1, 2)  # [Cout, kH, kW, Cin] -> [Cin, Cout, kH, kW]
    y = _check_against_dense(
        x, layer, layer, _dense_2d(lambda d: F.conv_transpose2d(d, w, layer.bias, stride=2, padding=1, output_padding=1))
    )
    assert y.spatial_shape == (1, 22, 26)


def test_2d_layers_reject_voxels_off_a_plane():
    with pytest.raises(ValueError, match=r"SubMConv2d: 2D sparse convs take voxels on a plane"):
        SubMConv2d(3, 4, 3).double()(random_voxels(0))
    with pytest.raises(ValueError, match="kernel_size must be an int or 2 ints"):
        SparseConv2d(3, 4, (3, 3, 3))


@pytest.mark.parametrize("kernel,stride,padding,output_padding", [(3, 2, 1, 0), (2, 2, 0, 0), ((3, 1, 2), (2, 1, 2), (1, 0, 0), (1, 0, 1))])
def test_transposed_conv3d_matches_dense_conv_transpose(kernel, stride, padding, output_padding):
    x = random_voxels(3)
    layer = SparseConvTranspose3d(3, 4, kernel, stride, padding, output_padding=output_padding).double()
    w = layer.weight.permute(4, 0, 1, 2, 3)  # KRSC [Cout, k0, k1, k2, Cin] -> [Cin, Cout, k0, k1, k2]
    dense = lambda d: F.conv_transpose3d(d, w, layer.bias, stride=stride, padding=padding, output_padding=output_padding)  # noqa: E731
    y = _check_against_dense(x, layer, layer, dense)
    # Output-site rule: exactly the sites some input generates.
    reach = F.conv_transpose3d(_active(x).double(), torch.ones(1, 1, *layer.kernel_size, dtype=torch.float64), stride=stride,
                               padding=padding, output_padding=output_padding) > 0
    assert torch.equal(_active(y), reach)
