"""k-nearest-neighbour distances against a brute-force float64 reference."""

import pytest
import torch

from sparse3d.core.knn import mean_neighbour_distance


def mean_neighbour_distance_bruteforce(points: torch.Tensor, k: int) -> torch.Tensor:
    """Per point: sort the float64 distances to every *other* point, average the k smallest."""
    p = points.double()
    out = []
    for i in range(len(p)):
        others = torch.cat([p[:i], p[i + 1 :]])
        out.append((others - p[i]).norm(dim=1).sort().values[:k].mean())
    return torch.stack(out)


@pytest.mark.parametrize("n, dim, k, chunk", [(5, 3, 1, 4096), (200, 3, 3, 4096), (200, 3, 3, 7), (90, 2, 5, 64)])
def test_matches_bruteforce(n, dim, k, chunk):
    points = torch.rand(n, dim, generator=torch.Generator().manual_seed(n + k))
    out = mean_neighbour_distance(points, k, chunk=chunk)
    assert out.shape == (n,) and out.dtype == torch.float32
    # float32 distances to points in the unit cube: within 1e-6 of the float64 values.
    torch.testing.assert_close(out.double(), mean_neighbour_distance_bruteforce(points, k), rtol=1e-5, atol=1e-6)


def test_squared_averages_the_squared_distances():
    # Neighbours of the origin at distances 1 and 3: mean 2, mean of squares 5.
    points = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 10.0]])
    assert mean_neighbour_distance(points, 2)[0] == 2.0
    assert mean_neighbour_distance(points, 2, squared=True)[0] == 5.0


def test_chunking_does_not_change_the_result():
    points = torch.rand(300, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(mean_neighbour_distance(points, 3, chunk=16), mean_neighbour_distance(points, 3))


def test_duplicates_are_neighbours_at_distance_zero():
    points = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
    torch.testing.assert_close(mean_neighbour_distance(points, 1), torch.tensor([0.0, 0.0, 5.0]))


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="k < N"):
        mean_neighbour_distance(torch.rand(3, 3), 3)
    with pytest.raises(ValueError, match="float"):
        mean_neighbour_distance(torch.zeros(4, 3, dtype=torch.int64), 1)
