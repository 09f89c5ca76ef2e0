"""Leave-one-out noise statistics and the perturbation they drive, on constructed cases."""

import pytest
import torch

from sparse3d.reconstruction.loo import (
    ParameterNoise,
    average_noise,
    parameter_drift,
    perturbed_gaussians,
)


def gaussians(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "means": torch.randn(n, 3, generator=g),
        "scales": torch.randn(n, 3, generator=g),
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.randn(n, generator=g),
        "sh0": torch.randn(n, 1, 3, generator=g),
        "shN": torch.randn(n, 3, 3, generator=g),
    }


def test_drift_statistics_on_a_constructed_case():
    base = gaussians(4)
    moved = {k: v.clone() for k, v in base.items()}
    # Delta of the x coordinate: 1, 2, 3, 4 -> mean 2.5, population std sqrt(1.25).
    moved["means"][:, 0] += torch.tensor([1.0, 2.0, 3.0, 4.0])
    moved["opacities"] += 0.5  # a constant shift: mean 0.5, std 0
    noise = parameter_drift(moved, base)
    torch.testing.assert_close(noise.mean["means"], torch.tensor([2.5, 0.0, 0.0]))
    torch.testing.assert_close(noise.std["means"], torch.tensor([1.25**0.5, 0.0, 0.0]))
    torch.testing.assert_close(noise.mean["opacities"], torch.tensor([0.5]))
    assert noise.std["opacities"].item() == pytest.approx(0.0, abs=1e-7)
    assert noise.mean["quats"].shape == (4,) and "sh0" not in noise.mean


def test_drift_needs_the_same_gaussians():
    with pytest.raises(ValueError, match="share their Gaussians"):
        parameter_drift(gaussians(4), gaussians(5))


def test_average_over_views():
    a = ParameterNoise({"means": torch.tensor([1.0, 0.0, 0.0])}, {"means": torch.tensor([2.0, 2.0, 2.0])})
    b = ParameterNoise({"means": torch.tensor([3.0, 0.0, 0.0])}, {"means": torch.tensor([0.0, 2.0, 4.0])})
    mean = average_noise([a, b])
    torch.testing.assert_close(mean.mean["means"], torch.tensor([2.0, 0.0, 0.0]))
    torch.testing.assert_close(mean.std["means"], torch.tensor([1.0, 2.0, 3.0]))
    assert ParameterNoise.from_dict(mean.to_dict()).std["means"].tolist() == [1.0, 2.0, 3.0]


def test_perturbation_adds_the_mean_without_spread_and_keeps_colours():
    params = gaussians(50)
    mean = {"means": torch.tensor([0.1, -0.2, 0.3]), "scales": torch.full((3,), 0.05),
            "quats": torch.zeros(4), "opacities": torch.tensor([-1.0])}
    noise = ParameterNoise(mean, {k: torch.zeros_like(v) for k, v in mean.items()})
    out = perturbed_gaussians(params, noise, torch.Generator().manual_seed(0), dropout_range=(0.0, 0.0))
    torch.testing.assert_close(out["means"], params["means"] + mean["means"])
    torch.testing.assert_close(out["opacities"], params["opacities"] - 1.0)
    assert torch.equal(out["sh0"], params["sh0"]) and torch.equal(out["shN"], params["shN"])


def test_perturbation_clips_drops_and_is_deterministic():
    params = gaussians(2000)
    noise = ParameterNoise(
        {k: torch.zeros(d) for k, d in (("means", 3), ("scales", 3), ("quats", 4), ("opacities", 1))},
        {k: torch.ones(d) for k, d in (("means", 3), ("scales", 3), ("quats", 4), ("opacities", 1))},
    )
    out = perturbed_gaussians(params, noise, torch.Generator().manual_seed(3))
    delta_scales = out["scales"] - params["scales"]
    assert delta_scales.abs().max() <= 0.8 + 1e-6  # clipped to +- s std, s <= 0.8
    dropped = (delta_scales == 0).float().mean()
    assert 0.55 < dropped < 0.85  # zeroed with probability in [0.6, 0.8]
    assert (out["means"] - params["means"]).abs().max() > 1.5  # positions are not clipped
    again = perturbed_gaussians(params, noise, torch.Generator().manual_seed(3))
    assert all(torch.equal(out[k], again[k]) for k in out)
