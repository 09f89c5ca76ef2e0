"""Voxelization and coordinate deduplication: native kernels against the torch
references (on each device), hand-worked cases, bad input, gradients and thread-count
independence."""

import pytest
import torch
from devices import DEVICES

from sparse3d.core.unique import downsample_coords, unique_coords, unique_coords_ref
from sparse3d.core.voxelize import voxel_grid_shape, voxelize, voxelize_index_ref

RANGE = [0.0, 0.0, 0.0, 4.0, 4.0, 2.0]
SIZE = [0.5, 0.5, 0.5]


def _points(seed: int, n: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Points partly outside RANGE (about 1/3), 2 samples, ~8 points per occupied voxel."""
    gen = torch.Generator().manual_seed(seed)
    xyz = torch.rand(n, 3, generator=gen, dtype=dtype) * torch.tensor([5.0, 5.0, 2.5], dtype=dtype) - 0.5
    feats = torch.randn(n, 2, generator=gen, dtype=dtype)
    batch = torch.randint(0, 2, (n,), generator=gen, dtype=torch.int32)
    return torch.cat([xyz, feats], 1), batch


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("max_points", [0, 1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_voxelize_index_matches_reference(max_points, dtype, device):
    # The reference divides by a tensor of voxel sizes on the points' device, so on CUDA too
    # it rounds as the kernel (a Python scalar would be a multiplication by its reciprocal).
    points, batch = (t.to(device) for t in _points(0, 3000, dtype))
    args = (points, batch, RANGE[:3], SIZE, list(voxel_grid_shape(RANGE, SIZE)), max_points)
    for out, ref in zip(torch.ops.sparse3d.voxelize(*args), voxelize_index_ref(*args)):
        assert torch.equal(out, ref)


def test_voxelize_hand_case():
    points = torch.tensor(
        [
            [0.1, 0.1, 0.1, 1.0],  # voxel (0, 0, 0)
            [3.9, 0.2, 1.9, 5.0],  # voxel (7, 0, 3)
            [0.4, 0.4, 0.4, 3.0],  # voxel (0, 0, 0)
            [4.0, 0.0, 0.0, 9.0],  # x == upper bound: outside
            [0.2, 0.3, 0.2, 2.0],  # voxel (0, 0, 0), third point
            [float("nan"), 0.0, 0.0, 7.0],  # not finite: dropped
        ]
    )
    mean = voxelize(points, RANGE, SIZE, "mean")
    assert mean.coords.tolist() == [[0, 0, 0, 0], [0, 7, 0, 3]]
    assert mean.point_to_voxel.tolist() == [0, 1, 0, -1, 0, -1]
    assert mean.num_points.tolist() == [3, 1]
    torch.testing.assert_close(mean.feats[0], torch.tensor([0.7 / 3, 0.8 / 3, 0.7 / 3, 2.0]))
    capped = voxelize(points, RANGE, SIZE, "max", max_points_per_voxel=2)
    assert capped.num_points.tolist() == [2, 1]
    assert capped.feats[0, 3] == 3.0  # the third point (value 2.0) is beyond the cap anyway
    first = voxelize(points, RANGE, SIZE, "first")
    assert first.feats[:, 3].tolist() == [1.0, 5.0]
    assert first.grid_shape == (8, 8, 4)


def test_voxelize_mean_gradient_is_one_over_count():
    points, batch = _points(1, 500, torch.float64)
    points.requires_grad_(True)
    v = voxelize(points, RANGE, SIZE, "mean", batch=batch)
    (grad,) = torch.autograd.grad(v.feats.sum(), points)
    inside = v.point_to_voxel >= 0
    expected = torch.zeros(500, dtype=torch.float64)
    expected[inside] = 1.0 / v.num_points[v.point_to_voxel[inside].long()].double()
    torch.testing.assert_close(grad, expected[:, None].expand_as(grad))


def test_voxelize_rejects_bad_input():
    points, batch = _points(2, 10)
    with pytest.raises(ValueError, match=r"points must be a float \[P, D >= 3\]"):
        voxelize(points[:, :2], RANGE, SIZE)
    with pytest.raises(ValueError, match="batch must be int32"):
        voxelize(points, RANGE, SIZE, batch=batch.long())
    with pytest.raises(ValueError, match="batch indices must be >= 0"):
        voxelize(points, RANGE, SIZE, batch=batch - 1)
    with pytest.raises(ValueError, match="reduce must be"):
        voxelize(points, RANGE, SIZE, "median")
    with pytest.raises(ValueError, match="empty grid"):
        voxelize(points, [0, 0, 0, 0, 4, 2], SIZE)
    with pytest.raises(ValueError, match="max_points_per_voxel must be >= 0"):
        voxelize(points, RANGE, SIZE, max_points_per_voxel=-1)


def test_voxelize_empty_input():
    v = voxelize(torch.zeros(0, 4), RANGE, SIZE)
    assert v.coords.shape == (0, 4) and v.feats.shape == (0, 4) and v.point_to_voxel.shape == (0,)


def test_voxelize_is_identical_across_thread_counts():
    points, batch = _points(3, 50000)
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            v = voxelize(points, RANGE, SIZE, "mean", 5, batch)
            results.append((v.coords, v.feats, v.point_to_voxel))
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_unique_coords_matches_reference_and_rejects_outside_rows():
    gen = torch.Generator().manual_seed(4)
    coords = torch.randint(0, 5, (400, 4), generator=gen, dtype=torch.int32)
    unique, inverse = unique_coords(coords, (5, 5, 5))
    ref_unique, ref_inverse = unique_coords_ref(coords, (5, 5, 5))
    assert torch.equal(unique, ref_unique) and torch.equal(inverse, ref_inverse)
    assert torch.equal(unique[inverse.long()], coords)
    with pytest.raises(RuntimeError, match="outside spatial_shape"):
        unique_coords(coords, (4, 5, 5))


def test_downsample_coords_hand_case():
    coords = torch.tensor([[0, 5, 1, 0], [0, 4, 0, 1], [1, 5, 1, 0], [0, 0, 3, 3]], dtype=torch.int32)
    coarse, inverse, shape = downsample_coords(coords, (6, 4, 4), 2)
    assert shape == (3, 2, 2)
    assert coarse.tolist() == [[0, 0, 1, 1], [0, 2, 0, 0], [1, 2, 0, 0]]
    assert inverse.tolist() == [1, 1, 2, 0]
