"""The one-cycle schedule on hand-computed points, and gradient clipping."""

import math

import pytest
import torch

from sparse3d.engine.schedules import (
    OneCycleConfig,
    clip_gradients,
    one_cycle,
    one_cycle_group,
    set_one_cycle,
)


def test_one_cycle_hand_computed_points():
    config = OneCycleConfig(lr=1e-3, div_factor=10, pct_start=0.4, moms=(0.95, 0.85))
    assert one_cycle(0, 100, config) == pytest.approx((1e-4, 0.95))
    assert one_cycle(20, 100, config) == pytest.approx(((1e-4 + 1e-3) / 2, 0.90))  # half way up
    assert one_cycle(40, 100, config) == pytest.approx((1e-3, 0.85))  # the peak
    assert one_cycle(70, 100, config) == pytest.approx(((1e-3 + 1e-8) / 2, 0.90))  # half way down
    lr, mom = one_cycle(99, 100, config)
    assert lr == pytest.approx(1e-8 + (1e-3 - 1e-8) / 2 * (1 + math.cos(math.pi * 59 / 60))) and lr < 2e-6
    assert mom == pytest.approx(0.95 - 0.05 * (1 + math.cos(math.pi * 59 / 60))) and mom > 0.949


def test_groups_follow_the_schedule_and_decay_is_decoupled():
    config = OneCycleConfig(weight_decay=0.5)
    w = torch.nn.Parameter(torch.ones(3))
    optimizers = {"net": torch.optim.Adam([one_cycle_group("net", [w], config)])}
    set_one_cycle(optimizers, 40, 100, config)
    group = optimizers["net"].param_groups[0]
    assert group["lr"] == pytest.approx(1e-3) and group["betas"] == pytest.approx((0.85, 0.99))
    w.grad = torch.zeros(3)
    optimizers["net"].step()
    torch.testing.assert_close(w.detach(), torch.full((3,), 1 - 1e-3 * 0.5))  # p <- p - lr wd p, nothing from Adam


def test_clip_gradients_bounds_the_global_norm():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
    optimizers = {"x": torch.optim.Adam([a, b])}
    clip_gradients(optimizers, 0)
    assert a.grad.tolist() == [3.0, 0.0]
    clip_gradients(optimizers, 1.0)
    torch.testing.assert_close(torch.cat([a.grad, b.grad]), torch.tensor([0.6, 0.0, 0.8]), rtol=1e-5, atol=1e-6)
