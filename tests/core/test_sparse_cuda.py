"""CUDA kernels of the sparse-voxel core against the CPU kernels: kernel maps, sparse
convolution, voxelization and unique coordinates (`cuda`-marked: skipped without a GPU,
failed under SPARSE3D_REQUIRE_CUDA=1)."""

import pytest
import torch
from sparse_cases import random_coords

from sparse3d.core.conv import sparse_conv, sparse_conv_ref
from sparse3d.core.kernel_map import conv_map, invert_kernel_map, kernel_map
from sparse3d.core.unique import unique_coords
from sparse3d.core.voxelize import voxelize

pytestmark = pytest.mark.cuda


def test_kernel_maps_match_cpu():
    shape = (9, 10, 11)
    coords = random_coords(0, shape, 2, 0.2)
    geom = ((3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1))
    cpu = kernel_map(coords, coords, shape, shape, *geom)
    gpu = kernel_map(coords.cuda(), coords.cuda(), shape, shape, *geom)
    assert torch.equal(gpu.cpu(), cpu)
    strided = ((3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1))
    out_cpu, nbr_cpu = conv_map(coords, shape, (5, 5, 6), *strided)
    out_gpu, nbr_gpu = conv_map(coords.cuda(), shape, (5, 5, 6), *strided)
    assert torch.equal(out_gpu.cpu(), out_cpu) and torch.equal(nbr_gpu.cpu(), nbr_cpu)
    assert torch.equal(invert_kernel_map(nbr_gpu, coords.shape[0]).cpu(), invert_kernel_map(nbr_cpu, coords.shape[0]))


def test_sparse_conv_matches_cpu_and_is_deterministic():
    shape = (9, 10, 11)
    coords = random_coords(1, shape, 2, 0.2)
    nbr = kernel_map(coords, coords, shape, shape, (3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1))
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(coords.shape[0], 16, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(27, 16, 32, generator=gen, dtype=torch.float64, requires_grad=True)
    v = torch.randn(coords.shape[0], 32, generator=gen, dtype=torch.float64)
    out = sparse_conv(feats, weight, nbr)
    grads = torch.autograd.grad(out, (feats, weight), v)
    runs = []
    for _ in range(2):
        f, w = feats.detach().cuda().requires_grad_(True), weight.detach().cuda().requires_grad_(True)
        o = sparse_conv(f, w, nbr.cuda())
        runs.append((o, *torch.autograd.grad(o, (f, w), v.cuda())))
    for a, b in zip((out, *grads), runs[0]):
        torch.testing.assert_close(b.cpu(), a)
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_strided_sparse_conv_with_bias_and_inverse_map_matches_reference_and_cpu():
    # The op's optional arguments: a given transposed map (the backward's input map) and a
    # bias (its gradient is a column_sum: segment_reduce on CUDA), over a strided map where
    # most output rows have few taps. In float64 the CUDA result, the CPU kernel's and the
    # torch reference's (on CUDA) agree to rounding; a second CUDA run gives the same bits.
    shape = (9, 10, 11)
    coords = random_coords(3, shape, 2, 0.2)
    out_coords, nbr = conv_map(coords, shape, (5, 5, 6), (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1))
    inv = invert_kernel_map(nbr, coords.shape[0])
    gen = torch.Generator().manual_seed(4)
    feats = torch.randn(coords.shape[0], 8, generator=gen, dtype=torch.float64)
    weight = torch.randn(27, 8, 12, generator=gen, dtype=torch.float64)
    bias = torch.randn(12, generator=gen, dtype=torch.float64)
    v = torch.randn(out_coords.shape[0], 12, generator=gen, dtype=torch.float64)

    def run(conv, device, *maps):
        params = [t.to(device).requires_grad_(True) for t in (feats, weight, bias)]
        out = conv(params[0], params[1], *(m.to(device) for m in maps), bias=params[2])
        return [t.cpu() for t in (out, *torch.autograd.grad(out, params, v.to(device)))]

    gpu = run(sparse_conv, "cuda", nbr, inv)
    for other in (run(sparse_conv, "cpu", nbr, inv), run(sparse_conv_ref, "cuda", nbr)):
        for name, a, b in zip(("out", "v_feats", "v_weight", "v_bias"), gpu, other):
            torch.testing.assert_close(a, b, msg=name)
    assert all(torch.equal(a, b) for a, b in zip(gpu, run(sparse_conv, "cuda", nbr, inv)))


def test_voxelize_and_unique_match_cpu():
    gen = torch.Generator().manual_seed(2)
    points = torch.rand(4000, 4, generator=gen) * 4.5 - 0.25
    batch = torch.randint(0, 2, (4000,), generator=gen, dtype=torch.int32)
    cpu = voxelize(points, [0, 0, 0, 4, 4, 4], [0.5, 0.5, 0.5], "mean", 3, batch)
    gpu = voxelize(points.cuda(), [0, 0, 0, 4, 4, 4], [0.5, 0.5, 0.5], "mean", 3, batch.cuda())
    assert torch.equal(gpu.coords.cpu(), cpu.coords) and torch.equal(gpu.point_to_voxel.cpu(), cpu.point_to_voxel)
    torch.testing.assert_close(gpu.feats.cpu(), cpu.feats)
    coords = torch.randint(0, 5, (300, 4), generator=gen, dtype=torch.int32)
    for a, b in zip(unique_coords(coords.cuda(), (5, 5, 5)), unique_coords(coords, (5, 5, 5))):
        assert torch.equal(a.cpu(), b)
