"""Floater elimination: planted outliers go, the surface stays; the lambda schedule."""

import math

import pytest
import torch

from sparse3d.reconstruction.floaters import LAMBDA_END, floater_lambda, floater_mask


def sphere_with_floaters(num_surface: int, num_floaters: int, seed: int = 0) -> torch.Tensor:
    """Points on the unit sphere, then floaters scattered at radius 1.5 to 3."""
    g = torch.Generator().manual_seed(seed)
    surface = torch.nn.functional.normalize(torch.randn(num_surface, 3, generator=g), dim=1)
    directions = torch.nn.functional.normalize(torch.randn(num_floaters, 3, generator=g), dim=1)
    radii = 1.5 + 1.5 * torch.rand(num_floaters, 1, generator=g)
    return torch.cat([surface, directions * radii])


@pytest.mark.parametrize("lam", [1.0, LAMBDA_END])
def test_planted_floaters_are_removed_and_the_surface_is_kept(lam):
    points = sphere_with_floaters(3000, 12)
    flagged = floater_mask(points, lam)
    assert flagged[3000:].all()
    assert not flagged[:3000].any()


def test_the_statistic_is_the_mean_squared_distance_to_sqrt_n_neighbours():
    # 16 points: K = 4. Fifteen on a 5 x 3 grid of spacing 1, one far away at 100: it
    # is the only outlier by any lambda up to (N - 1) / sqrt(N) (one point in N).
    grid = torch.stack(torch.meshgrid(torch.arange(5.0), torch.arange(3.0), indexing="ij"), -1).reshape(-1, 2)
    points = torch.cat([torch.cat([grid, torch.zeros(15, 1)], 1), torch.tensor([[100.0, 0.0, 0.0]])])
    flagged = floater_mask(points, (16 - 1) / math.sqrt(16) * 0.999)
    assert flagged.tolist() == [False] * 15 + [True]


def test_nothing_is_flagged_in_identical_statistics_or_a_tiny_set():
    assert floater_mask(torch.zeros(50, 3), 1.0).sum() == 0  # identical statistics
    assert floater_mask(torch.rand(4, 3), 0.0).sum() == 0


def test_lambda_grows_linearly_over_densification():
    assert floater_lambda(500, 500, 6000) == 1.0
    assert floater_lambda(6000, 500, 6000) == LAMBDA_END
    assert floater_lambda(3250, 500, 6000) == pytest.approx((1.0 + LAMBDA_END) / 2)
    assert floater_lambda(0, 500, 6000) == 1.0 and floater_lambda(9000, 500, 6000) == LAMBDA_END


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match=r"float \[N, 3\]"):
        floater_mask(torch.zeros(10, 2), 1.0)
