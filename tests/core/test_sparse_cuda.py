"""CUDA kernels of the sparse-voxel core against the CPU kernels (skipped without a GPU)."""

import pytest
import torch
from sparse_cases import random_coords

import sparse3d
from sparse3d.core.conv import sparse_conv
from sparse3d.core.kernel_map import conv_map, invert_kernel_map, kernel_map
from sparse3d.core.unique import unique_coords
from sparse3d.core.voxelize import voxelize

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and sparse3d.HAS_NATIVE), reason="needs a GPU and the native extension"
)


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
