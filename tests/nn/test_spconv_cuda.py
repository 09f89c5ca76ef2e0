"""Parity with spconv 2.x's GPU build on CUDA tensors: SubMConv3d, SparseConv3d and the
VoxelResBackBone8x encoder, with the same weights, give the same output sites, values and
gradients as spconv's own GPU kernels.

`cuda`-marked. The test extra installs spconv's CPU build (tests/nn/test_spconv_parity.py);
these tests need a CUDA build in its place (``pip uninstall spconv; pip install
spconv-cu120``, matching the machine's CUDA), and skip, or fail under
SPARSE3D_REQUIRE_CUDA=1, without one. spconv's GPU kernels take float32 and float16 only,
so the comparison is in float32, to tolerances set from the accumulation length.
"""

import pytest
import torch
from sparse_cases import (
    ENCODER_GRID,
    assert_encoder_matches_spconv,
    encoder_scene,
    random_voxels,
    randomise_batch_norm,
    sort_by_coords,
)

from sparse3d.core.sparse_voxels import SparseVoxels
from sparse3d.nn.backbones.voxel_resnet import VoxelResBackBone8x
from sparse3d.nn.conv import SparseConv3d, SubMConv3d
from sparse3d.nn.spconv_compat import load_spconv_state_dict, spconv_voxel_res_backbone

pytestmark = pytest.mark.cuda

@pytest.fixture
def spconv():
    """``spconv.pytorch`` with its CUDA kernels (a skip, so a failure under
    SPARSE3D_REQUIRE_CUDA=1, where only the CPU build is installed)."""
    spconv = pytest.importorskip("spconv.pytorch")
    from spconv.cppconstants import CPU_ONLY_BUILD

    if CPU_ONLY_BUILD:
        pytest.skip("spconv is its CPU-only build: install a CUDA build (spconv-cu1xx) for the GPU parity tests")
    return spconv


def _cuda(x: SparseVoxels) -> SparseVoxels:
    return SparseVoxels(x.coords.cuda(), x.feats.cuda(), x.spatial_shape, x.batch_size)


def _scene(seed: int, channels: int = 16) -> SparseVoxels:
    """The (batch, z, y, x) scene of tests/nn/test_spconv_parity.py, on the GPU."""
    return _cuda(random_voxels(seed, shape=(12, 40, 40), batch_size=2, density=0.05, channels=channels, dtype=torch.float32))


def _compare(ours, theirs, x: SparseVoxels, spconv, grad_atol: float = 1e-3) -> None:
    """Same output sites (sorted: the libraries order them differently), features, and
    gradients of the input features and weights for one random loss of the sorted rows."""
    load_spconv_state_dict(ours, theirs.state_dict())
    feats = x.feats.detach().clone().requires_grad_(True)
    feats_sp = x.feats.detach().clone().requires_grad_(True)
    y = ours(x.replace_feats(feats))
    t = theirs(spconv.SparseConvTensor(feats_sp, x.coords, list(x.spatial_shape), x.batch_size))
    assert y.feats.is_cuda and t.features.is_cuda
    assert list(t.spatial_shape) == list(y.spatial_shape)
    c_ours, f_ours = sort_by_coords(y.coords, y.feats, y.spatial_shape)
    c_sp, f_sp = sort_by_coords(t.indices, t.features, y.spatial_shape)
    assert c_ours.shape[0] > 0 and torch.equal(c_ours.int(), c_sp.int())
    # 27 taps x 16-32 channels of float32 products per output: a few 1e-6 apart at most.
    torch.testing.assert_close(f_ours, f_sp, rtol=1e-4, atol=1e-4)
    cotangent = torch.randn(f_ours.shape, generator=torch.Generator().manual_seed(0)).cuda()
    grads = torch.autograd.grad((f_ours * cotangent).sum(), [feats, ours.weight])
    grads_sp = torch.autograd.grad((f_sp * cotangent).sum(), [feats_sp, theirs.weight])
    # The weight gradient sums over every output site (about 2,000): looser, absolute.
    for name, a, b in zip(("v_feats", "v_weight"), grads, grads_sp):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=grad_atol, msg=name)


@pytest.mark.parametrize("channels", [16, 32])
def test_subm_conv_matches_spconv_gpu(spconv, channels):
    theirs = spconv.SubMConv3d(channels, channels, 3, bias=False, indice_key="s").cuda()
    ours = SubMConv3d(channels, channels, 3, bias=False).cuda()
    _compare(ours, theirs, _scene(0, channels), spconv)


@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), ((3, 1, 1), (2, 1, 1), 0), (3, 2, (0, 1, 1))])
def test_strided_conv_matches_spconv_gpu(spconv, kernel, stride, padding):
    theirs = spconv.SparseConv3d(16, 32, kernel, stride, padding, bias=False).cuda()
    ours = SparseConv3d(16, 32, kernel, stride, padding, bias=False).cuda()
    _compare(ours, theirs, _scene(1), spconv)


def test_encoder_matches_spconv_gpu_openpcdet_encoder(spconv):
    # Eval mode, on random running statistics: batch norm is then a fixed affine map on
    # both sides (in train mode, float32 batch statistics over 21 layers would set the
    # tolerance, not the convolutions). Tolerances relative to the largest value: 20
    # float32 convolutions deep.
    reference = spconv_voxel_res_backbone(5)
    randomise_batch_norm(reference, 0)
    ours = VoxelResBackBone8x(5, ENCODER_GRID)
    load_spconv_state_dict(ours, reference.state_dict())
    reference, ours = reference.cuda().eval(), ours.cuda().eval()
    assert_encoder_matches_spconv(ours, reference, _cuda(encoder_scene(0)), spconv, rtol=1e-3, atol=1e-4,
                                  grad_rtol=1e-3, grad_atol=1e-4)
