"""march_rays: native kernel vs the dense torch reference (bit for bit), determinism, a
hand-worked case, bad input."""

import math

import pytest
import torch
from devices import DEVICES
from torch import Tensor
from torch.library import opcheck

import sparse3d
from sparse3d.core.grid import VoxelGrid
from sparse3d.core.ray_march import march_rays, march_rays_ref, ray_box

native = pytest.mark.skipif(not sparse3d.HAS_NATIVE, reason="native extension not built")
# On CUDA the reference (torch) divides by voxel_size through its float32 reciprocal, and so
# does the CUDA kernel: each device (DEVICES) is compared with the reference on that device.


def random_grid(g: torch.Generator, density: float) -> tuple[VoxelGrid, Tensor]:
    """A non-cubic grid at a random corner, and sorted keys of a random occupied set that
    always includes voxels on the grid's border."""
    shape = tuple(int(s) for s in torch.randint(1, 13, (3,), generator=g))
    voxel_size = float(torch.rand(1, generator=g)) * 0.7 + 0.05
    lower = tuple(float(x) for x in torch.randn(3, generator=g) * 2)
    grid = VoxelGrid(lower, voxel_size, shape)
    occupied = torch.rand(shape, generator=g) < density
    border = torch.zeros(shape, dtype=torch.bool)
    border[0], border[-1], border[:, 0], border[:, :, -1] = True, True, True, True
    occupied |= border & (torch.rand(shape, generator=g) < 0.5)
    return grid, grid.keys(occupied.nonzero()).sort().values


def random_rays(g: torch.Generator, grid: VoxelGrid, n: int) -> tuple[Tensor, ...]:
    """origins, dirs, t_start, t_end, jitter, step: a mix of rays through the grid, missing it,
    starting inside it, along the axes, grazing voxel faces and the grid's border, with
    zero-length and reversed stretches."""
    lower, upper = torch.tensor(grid.lower), torch.tensor(grid.upper)
    extent, size = upper - lower, grid.voxel_size
    origins = lower + (torch.rand(n, 3, generator=g) * 1.8 - 0.4) * extent  # inside and outside
    dirs = lower + torch.rand(n, 3, generator=g) * extent - origins
    dirs[: n // 8] = torch.randn(n // 8, 3, generator=g)  # many of these miss the grid
    kind = torch.randint(0, 8, (n,), generator=g)
    axis = torch.randint(0, 3, (n,), generator=g)
    sign = torch.randint(0, 2, (n,), generator=g) * 2.0 - 1.0
    rows = torch.arange(n)
    along = kind == 0  # along an axis, either way
    dirs[along] = 0.0
    dirs[rows[along], axis[along]] = sign[along]
    grazing = kind == 1  # one component tiny, the origin on a voxel face of that axis
    dirs[rows[grazing], axis[grazing]] = 1e-6 * sign[grazing]
    faces = torch.randint(0, 14, (n,), generator=g).float()
    origins[rows[grazing], axis[grazing]] = (lower + faces[:, None] * size)[rows[grazing], axis[grazing]]
    border = kind == 2  # in the plane of the grid's lower or upper face
    side = torch.where(sign[:, None] > 0, lower, upper)
    origins[rows[border], axis[border]] = side[rows[border], axis[border]]
    dirs[rows[border], axis[border]] = 0.0
    centres = kind == 3  # from voxel centres, so that steps land on faces
    cells = torch.randint(0, 12, (n, 3), generator=g).float()
    origins[centres] = (lower + (cells + 0.5) * size)[centres]
    dirs = dirs / dirs.norm(dim=1, keepdim=True).clamp(min=1e-12)
    t_start, t_end = ray_box(origins, dirs, lower, upper, near=-1.0)
    missed = ~(torch.isfinite(t_start) & torch.isfinite(t_end))
    t_start, t_end = t_start.where(~missed, 0.0), t_end.where(~missed, 0.0)
    inside = kind == 4  # from t_start = 0 wherever the origin is
    t_start[inside] = 0.0
    t_end[kind == 5] = t_start[kind == 5]  # zero length
    t_end[kind == 6] = t_start[kind == 6] - 0.5  # reversed
    jitter = torch.rand(n, generator=g)
    step = size * float(torch.rand(1, generator=g) * 1.4 + 0.1)
    return origins, dirs, t_start, t_end, jitter, step


def assert_same(got, want):
    assert got.offsets.dtype == torch.int64 and got.t.dtype == torch.float32
    assert torch.equal(got.offsets, want.offsets)
    assert torch.equal(got.t, want.t)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("density", [0.03, 0.4, 1.0])
@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_bit_for_bit(seed, density, device):
    g = torch.Generator().manual_seed(seed)
    grid, occupied = random_grid(g, density)
    origins, dirs, t_start, t_end, jitter, step = (x.to(device) if isinstance(x, Tensor) else x
                                                   for x in random_rays(g, grid, 600))
    args = (origins, dirs, t_start, t_end, step, grid, occupied.to(device), jitter)
    samples = march_rays(*args)
    assert_same(samples, march_rays_ref(*args))
    assert samples.t.numel() > 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(3))
def test_grid_aligned_rays_match_reference(seed, device):
    # Power-of-two voxels and steps, origins on faces: many steps land exactly on faces.
    g = torch.Generator().manual_seed(100 + seed)
    grid = VoxelGrid((-1.0, 0.0, 2.0), 0.25, (5, 3, 7))
    occupied = torch.nonzero(torch.rand(5 * 3 * 7, generator=g) < 0.4).flatten()
    n = 400
    cells = torch.randint(-2, 8, (n, 3), generator=g).float()
    origins = torch.tensor(grid.lower) + cells * 0.25
    dirs = torch.randint(-2, 3, (n, 3), generator=g).float()
    t_start = torch.randint(-4, 4, (n,), generator=g) * 0.25
    t_end = t_start + torch.randint(0, 12, (n,), generator=g) * 0.25
    jitter = torch.randint(0, 4, (n,), generator=g) * 0.25
    origins, dirs, t_start, t_end, occupied, jitter = (
        x.to(device) for x in (origins, dirs, t_start, t_end, occupied, jitter))
    for step in (0.125, 0.25, 0.75):
        args = (origins, dirs, t_start, t_end, step, grid, occupied, jitter)
        assert_same(march_rays(*args), march_rays_ref(*args))


def test_far_rays_with_steps_near_float_resolution():
    # t around 1e4 with steps of a few ulps: equal and skipped t values are where they are.
    g = torch.Generator().manual_seed(7)
    grid = VoxelGrid((0.0, 0.0, 0.0), 0.5, (4, 3, 5))
    occupied = torch.nonzero(torch.rand(60, generator=g) < 0.5).flatten()
    dirs = torch.nn.functional.normalize(torch.randn(16, 3, generator=g), dim=1)
    t_start = 1e4 + torch.rand(16, generator=g)
    origins = torch.tensor([1.0, 0.75, 1.25]) - (t_start[:, None] + 0.3) * dirs
    t_end = t_start + torch.rand(16, generator=g) * 2
    jitter = torch.rand(16, generator=g)
    for step in (3e-4, 2e-3):
        args = (origins, dirs, t_start, t_end, step, grid, occupied, jitter)
        assert_same(march_rays(*args), march_rays_ref(*args))


def test_hand_worked_ray_along_x():
    # Voxels 1 and 3 of a 4 x 1 x 1 grid of unit voxels: x in [1, 2) and [3, 4).
    grid = VoxelGrid((0.0, 0.0, 0.0), 1.0, (4, 1, 1))
    occupied = grid.keys(torch.tensor([[1, 0, 0], [3, 0, 0]]))
    origins = torch.tensor([[-1.0, 0.5, 0.5], [-1.0, 0.5, 0.5], [5.0, 0.5, 0.5]])
    dirs = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    samples = march_rays(origins, dirs, torch.zeros(3), torch.full((3,), 6.0), 0.5, grid, occupied,
                         jitter=torch.tensor([0.0, 0.5, 0.0]))
    assert samples.offsets.tolist() == [0, 4, 8, 12]
    assert samples.t.tolist() == [
        2.0, 2.5, 4.0, 4.5,  # x = t - 1
        2.25, 2.75, 4.25, 4.75,  # half a step later
        1.5, 2.0, 3.5, 4.0,  # x = 5 - t: t = 1 is x = 4, outside; t = 2 is x = 3, inside
    ]
    assert samples.ray_ids.tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_empty_occupied_and_no_rays():
    g = torch.Generator().manual_seed(8)
    grid, _ = random_grid(g, 0.5)
    origins, dirs, t_start, t_end, jitter, step = random_rays(g, grid, 50)
    none = torch.zeros(0, dtype=torch.int64)
    samples = march_rays(origins, dirs, t_start, t_end, step, grid, none, jitter)
    assert_same(samples, march_rays_ref(origins, dirs, t_start, t_end, step, grid, none, jitter))
    assert samples.offsets.tolist() == [0] * 51
    empty = torch.zeros(0, 3)
    samples = march_rays(empty, empty, torch.zeros(0), torch.zeros(0), step, grid, torch.tensor([0]))
    assert samples.offsets.tolist() == [0] and samples.t.shape == (0,)


@native
def test_rays_beyond_the_reference():
    # An infinite t_end ends at the grid's far side; a ray with neither direction nor
    # bound has no count, and says so.
    grid = VoxelGrid((0.0, 0.0, 0.0), 1.0, (4, 1, 1))
    occupied = grid.keys(torch.tensor([[1, 0, 0], [3, 0, 0]]))
    origin, along_x = torch.tensor([[-1.0, 0.5, 0.5]]), torch.tensor([[1.0, 0.0, 0.0]])
    samples = march_rays(origin, along_x, torch.zeros(1), torch.full((1,), math.inf), 0.5, grid, occupied)
    assert samples.t.tolist() == [2.0, 2.5, 4.0, 4.5]
    nan = torch.full((1,), math.nan)
    assert march_rays(origin, along_x, nan, torch.ones(1), 0.5, grid, occupied).t.numel() == 0
    with pytest.raises(RuntimeError, match="samples never end"):
        march_rays(torch.tensor([[1.5, 0.5, 0.5]]), torch.zeros(1, 3), torch.zeros(1),
                   torch.full((1,), math.inf), 0.5, grid, occupied)


@native
def test_bitwise_equal_across_thread_counts():
    g = torch.Generator().manual_seed(9)
    grid, occupied = random_grid(g, 0.3)
    rays = random_rays(g, grid, 5000)
    args = (*rays[:4], rays[5], grid, occupied, rays[4])
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            results.append(march_rays(*args))
    finally:
        torch.set_num_threads(previous)
    for r in results[1:]:
        assert_same(r, results[0])


@native
def test_opcheck():
    g = torch.Generator().manual_seed(10)
    grid, occupied = random_grid(g, 0.4)
    origins, dirs, t_start, t_end, jitter, step = random_rays(g, grid, 40)
    opcheck(torch.ops.sparse3d.march_rays.default,
            (origins, dirs, t_start, t_end, jitter, occupied, list(grid.lower), grid.voxel_size,
             list(grid.shape), step))


def _rays(n=4):
    return torch.zeros(n, 3), torch.ones(n, 3), torch.zeros(n), torch.ones(n)


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("origins", torch.zeros(4, 2), r"origins must be float32 \[4, 3\]"),
        ("dirs", torch.ones(4, 3, dtype=torch.float64), r"dirs must be float32 \[4, 3\]"),
        ("t_start", torch.zeros(3), r"t_start must be float32 \[4\]"),
        ("t_end", torch.ones(4, 1), r"t_end must be float32 \[4\]"),
        ("jitter", torch.zeros(4, dtype=torch.float16), r"jitter must be float32 \[4\]"),
        ("occupied", torch.tensor([0, 1], dtype=torch.int32), "occupied must be int64"),
        ("step", 0.0, "step must be > 0"),
    ],
)
def test_bad_arguments(name, value, message):
    origins, dirs, t_start, t_end = _rays()
    args = {"origins": origins, "dirs": dirs, "t_start": t_start, "t_end": t_end, "step": 0.1,
            "grid": VoxelGrid((0.0, 0.0, 0.0), 1.0, (2, 2, 2)), "occupied": torch.tensor([0, 3]),
            "jitter": torch.zeros(4)}
    with pytest.raises(ValueError, match=message):
        march_rays(**(args | {name: value}))


@native
def test_the_kernel_checks_its_own_arguments():
    origins, dirs, t_start, t_end = _rays()
    occupied = torch.tensor([0, 3])
    with pytest.raises(RuntimeError, match=r"jitter must be float32 \[4\]"):
        torch.ops.sparse3d.march_rays(origins, dirs, t_start, t_end, torch.zeros(5), occupied,
                                      [0.0] * 3, 1.0, [2, 2, 2], 0.1)
    with pytest.raises(RuntimeError, match="shape must be 3 sizes"):
        torch.ops.sparse3d.march_rays(origins, dirs, t_start, t_end, t_start, occupied,
                                      [0.0] * 3, 1.0, [2, 0, 2], 0.1)
