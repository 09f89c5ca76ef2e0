"""Where the radiance fields sample: the cells that meet the local boxes, and the alpha
mask that narrows them to visible density."""

import itertools

import torch

from sparse3d.core.grid import VoxelGrid
from sparse3d.fields.occupancy import (
    Occupancy,
    box_occupancy,
    cubes_meeting,
    full_occupancy,
    visible_occupancy,
)


def test_box_occupancy_is_exactly_the_cells_that_meet_a_box():
    grid = VoxelGrid((-1.0, -1.0, -1.0), 0.25, (8, 8, 8))
    centers = torch.tensor([[0.1, -0.3, 0.55], [0.9, 0.9, 0.9], [-0.6, 0.2, 0.0]])
    half = 0.3
    expected = set()
    for i, j, k in itertools.product(range(8), repeat=3):
        lo = torch.tensor(grid.lower) + torch.tensor([i, j, k]) * grid.voxel_size
        hi = lo + grid.voxel_size
        # a closed cube meets a half-open cell when the intervals overlap on every axis
        meets = ((centers - half < hi) & (centers + half >= lo)).all(1).any()
        if meets:
            expected.add(int(grid.keys(torch.tensor([[i, j, k]]))[0]))
    assert set(box_occupancy(grid, centers, half).keys.tolist()) == expected


def test_visible_occupancy_keeps_the_cells_near_density_and_one_cell_around():
    grid = VoxelGrid((0.0, 0.0, 0.0), 1.0, (6, 6, 6))
    occupancy = full_occupancy(grid)
    dense_cell = torch.tensor([2.0, 3.0, 4.0])

    def sigma(points):  # opaque only inside cell (2, 3, 4)
        inside = ((points >= dense_cell) & (points < dense_cell + 1)).all(1)
        return torch.where(inside, 100.0, 0.0)

    kept = visible_occupancy(occupancy, sigma, step=0.1, threshold=1e-3)
    coords = grid.coords(kept.keys).long()
    assert len(kept.keys) == 27
    assert ((coords - torch.tensor([2, 3, 4])).abs().amax(1) <= 1).all()
    # a narrowed occupancy narrows no further, and never grows
    again = visible_occupancy(Occupancy(grid, kept.keys), sigma, step=0.1, threshold=1e-3)
    assert torch.equal(again.keys, kept.keys)


def test_march_samples_only_the_occupied_cells():
    grid = VoxelGrid((0.0, 0.0, 0.0), 1.0, (4, 1, 1))
    occupancy = Occupancy(grid, grid.keys(torch.tensor([[1, 0, 0], [3, 0, 0]])))
    origins, dirs = torch.tensor([[-1.0, 0.5, 0.5]]), torch.tensor([[1.0, 0.0, 0.0]])
    samples = occupancy.march(origins, dirs, step=0.5, near=0.0)
    x = samples.points(origins, dirs)[:, 0]
    assert torch.equal(x, torch.tensor([1.0, 1.5, 3.0, 3.5]))  # the ray enters the grid at t = 1


def test_cubes_meeting_are_exactly_the_cubes_that_meet_an_occupied_cell():
    grid = VoxelGrid((-1.0, -1.0, -1.0), 0.25, (8, 8, 8))
    occupied = torch.tensor([[1, 1, 1], [6, 2, 5], [7, 7, 7]])
    occupancy = Occupancy(grid, grid.keys(occupied).sort().values)
    centers = torch.rand(200, 3, generator=torch.Generator().manual_seed(0)) * 2.4 - 1.2
    half = 0.15
    lo = torch.tensor(grid.lower) + occupied * grid.voxel_size  # [3, 3] the cells' lower corners
    meets = ((centers[:, None] - half < lo + grid.voxel_size) & (centers[:, None] + half >= lo)).all(-1).any(1)
    assert 0 < int(meets.sum()) < len(centers)
    assert torch.equal(cubes_meeting(occupancy, centers, half), meets)
