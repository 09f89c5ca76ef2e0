"""box_lookup: native kernel (on each device) vs torch reference on random grids, a
hand-worked case, determinism across thread counts, the CUDA kernel against the CPU one,
bad input."""

import pytest
import torch
from devices import DEVICES
from torch.library import opcheck

import sparse3d
from sparse3d.core.box_lookup import box_lookup, box_lookup_ref
from sparse3d.core.grid import VoxelGrid

native = pytest.mark.skipif(not sparse3d.HAS_NATIVE, reason="native extension not built")


def random_case(seed: int, density: float, n_points: int = 3000):
    """A random grid, occupied set and half-size, and points: uniform over the grid and a
    margin around it, right on (and an ulp off) box faces, and on the grid's border."""
    g = torch.Generator().manual_seed(seed)
    shape = tuple(int(s) for s in torch.randint(1, 10, (3,), generator=g))
    voxel = float(torch.empty(1).uniform_(0.05, 0.5, generator=g))
    lower = tuple(float(v) for v in torch.empty(3).uniform_(-2, 2, generator=g))
    grid = VoxelGrid(lower, voxel, shape)
    volume = shape[0] * shape[1] * shape[2]
    keep = torch.rand(volume, generator=g) < density
    occupied = torch.arange(volume)[keep]
    half = voxel * float(torch.empty(1).uniform_(0.3, 0.95, generator=g))
    lo, hi = torch.tensor(lower), torch.tensor(grid.upper)
    uniform = lo - voxel + torch.rand(n_points, 3, generator=g) * (hi - lo + 2 * voxel)
    # On the faces of random boxes (inside, exactly on, or just beyond), in random axes.
    cells = torch.stack([torch.randint(0, s, (n_points,), generator=g) for s in shape], 1)
    centers = grid.centers(cells)
    side = torch.randint(0, 2, (n_points, 3), generator=g) * 2 - 1
    wiggle = torch.randint(-1, 2, (n_points, 3), generator=g).float() * 1e-6
    on_face = torch.rand(n_points, 3, generator=g) < 0.5
    faces = torch.where(on_face, centers + side * (half + wiggle), centers + (torch.rand(n_points, 3, generator=g) - 0.5) * voxel)
    # On the grid's border faces.
    border = uniform.clone()
    axis = torch.randint(0, 3, (n_points,), generator=g)
    edge = torch.where(torch.rand(n_points, generator=g) < 0.5, lo[axis], hi[axis])
    border[torch.arange(n_points), axis] = edge
    points = torch.cat([uniform, faces.float(), border]).float()
    return points, grid, occupied, half


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("k", [1, 4, 10])
@pytest.mark.parametrize("density", [0.15, 0.9, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_reference(seed, density, k, device):
    points, grid, occupied, half = random_case(seed, density)
    index, weights = (t.cpu() for t in box_lookup(points.to(device), grid, occupied.to(device), half, k))
    # The reference runs on the CPU for both devices: torch's CUDA division by a Python
    # scalar multiplies by its reciprocal, where both kernels divide (points on box faces
    # would then find other cells).
    ref_index, ref_weights = box_lookup_ref(points, grid, occupied, half, k)
    assert index.shape == weights.shape == (len(points), k)
    assert torch.equal(index, ref_index)
    torch.testing.assert_close(weights, ref_weights, rtol=1e-6, atol=1e-7)
    assert (index >= 0).any() and (index < 0).any()  # the case exercises hits and misses


def test_empty_occupied_finds_nothing():
    points, grid, _, half = random_case(4, 0.5, n_points=100)
    index, weights = box_lookup(points, grid, torch.zeros(0, dtype=torch.long), half, 3)
    assert torch.equal(index, torch.full((300, 3), -1)) and torch.equal(weights, torch.zeros(300, 3))


def test_hand_worked_two_boxes():
    # Unit voxels; boxes of half-size 0.75 on voxels (1, 1, 1) and (2, 1, 1), centred at
    # x = 1.5 and 2.5 (y = z = 1.5).
    grid = VoxelGrid((0.0, 0.0, 0.0), 1.0, (4, 4, 4))
    occupied = grid.keys(torch.tensor([[1, 1, 1], [2, 1, 1]]))
    points = torch.tensor([[1.8, 1.5, 1.5], [2.25, 1.5, 1.5], [1.2, 1.5, 1.5], [2.0, 1.5, 1.5], [0.5, 0.5, 0.5]])
    index, weights = box_lookup(points, grid, occupied, 0.75, 3)
    # Point 0 is 0.3 from box 0 and 0.7 from box 1; point 1 lies 0.25 from box 1 and 0.75
    # (on the face) from box 0; point 2 is 1.3 from box 1, outside it; point 3 is halfway
    # (a tie, to the lower box); point 4 is in no box.
    assert index.tolist() == [[0, 1, -1], [1, 0, -1], [0, -1, -1], [0, 1, -1], [-1, -1, -1]]
    x = points[:2, 0].double()
    d = torch.stack([x - 1.5, 2.5 - x], 1).abs()
    d[1] = d[1].flip(0)  # point 1: box 1 first
    w = 1 / (d + 1e-6)
    torch.testing.assert_close(weights[:2, :2].double(), w / w.sum(1, keepdim=True), rtol=1e-6, atol=0)
    assert weights[2].tolist() == [1.0, 0.0, 0.0] and weights[3].tolist() == [0.5, 0.5, 0.0]
    assert weights[4].tolist() == [0.0, 0.0, 0.0]
    top, top_weight = box_lookup(points, grid, occupied, 0.75, 1)
    assert top[:, 0].tolist() == [0, 1, 0, 0, -1] and top_weight[:4, 0].tolist() == [1.0] * 4


@native
def test_bitwise_equal_across_thread_counts():
    points, grid, occupied, half = random_case(5, 0.6, n_points=20000)
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            results.append(box_lookup(points, grid, occupied, half, 4))
    finally:
        torch.set_num_threads(previous)
    for index, weights in results[1:]:
        assert torch.equal(index, results[0][0]) and torch.equal(weights, results[0][1])


@pytest.mark.cuda
def test_cuda_matches_cpu_bit_for_bit():
    # Both kernels run box_lookup.h's float32 expressions, rounded one by one on the GPU
    # too (rounding.h; nvcc's division and sqrtf are correctly rounded, as the CPU's), and
    # a hash of unique keys finds the same boxes whatever the insertion order: the same
    # bits as the CPU, and the same again on a second run.
    points, grid, occupied, half = random_case(5, 0.6, n_points=20000)
    cpu = box_lookup(points, grid, occupied, half, 4)
    runs = [box_lookup(points.cuda(), grid, occupied.cuda(), half, 4) for _ in range(2)]
    for index, weights in runs:
        assert index.is_cuda and weights.is_cuda
        assert torch.equal(index.cpu(), cpu[0]) and torch.equal(weights.cpu(), cpu[1])
    empty = box_lookup(points[:10].cuda(), grid, torch.zeros(0, dtype=torch.long, device="cuda"), half, 2)
    assert torch.equal(empty[0].cpu(), torch.full((10, 2), -1)) and torch.equal(empty[1].cpu(), torch.zeros(10, 2))


@pytest.mark.cuda
def test_cuda_opcheck():
    points, grid, occupied, half = random_case(6, 0.5, n_points=50)
    opcheck(torch.ops.sparse3d.box_lookup.default,
            (points.cuda(), occupied.cuda(), list(grid.lower), grid.voxel_size, list(grid.shape), half, 4))


@native
def test_opcheck():
    points, grid, occupied, half = random_case(6, 0.5, n_points=50)
    opcheck(torch.ops.sparse3d.box_lookup.default, (points, occupied, list(grid.lower), grid.voxel_size, list(grid.shape), half, 4))


@native
def test_native_rejects_unsorted_occupied():
    for occupied in (torch.tensor([5, 3]), torch.tensor([3, 3]), torch.tensor([64])):
        with pytest.raises(RuntimeError, match="occupied must be sorted unique keys"):
            torch.ops.sparse3d.box_lookup(torch.zeros(1, 3), occupied, [0.0] * 3, 1.0, [4, 4, 4], 0.5, 2)


GRID = VoxelGrid((0.0, 0.0, 0.0), 1.0, (4, 4, 4))


@pytest.mark.parametrize(
    "points, occupied, half_size, k, message",
    [
        (torch.zeros(2, 3, dtype=torch.float64), torch.tensor([0]), 0.5, 1, "points must be float32"),
        (torch.zeros(2, 2), torch.tensor([0]), 0.5, 1, "points must be float32 \\[S, 3\\]"),
        (torch.zeros(2, 3), torch.tensor([0], dtype=torch.int32), 0.5, 1, "occupied must be int64"),
        (torch.zeros(2, 3), torch.tensor([0]), 1.0, 1, "half_size must be in"),
        (torch.zeros(2, 3), torch.tensor([0]), 0.0, 1, "half_size must be in"),
        (torch.zeros(2, 3), torch.tensor([0]), 0.5, 0, "k must be >= 1"),
    ],
)
def test_bad_arguments(points, occupied, half_size, k, message):
    with pytest.raises(ValueError, match=message):
        box_lookup(points, GRID, occupied, half_size, k)
