"""GaussianObject's leave-one-out noise model: how much the Gaussians' parameters move
when one input view is missing, and Gaussians perturbed by that much.

A leave-one-out run trains with view i left out until densification ends; from there
two branches continue with the same Gaussians (same rows): one with every view, one still
without view i. The per-channel mean and standard deviation of their difference, per
attribute, are the statistics of the "3D noise" that an unseen viewpoint suffers. Renders
of Gaussians perturbed by that noise at a reference view are corrupted images whose clean
version is known: training pairs for the repair model.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

NOISY_ATTRIBUTES = ("means", "scales", "quats", "opacities")
"""Attributes the noise perturbs; colours (SH) keep their values (the reference)."""
CLIPPED_ATTRIBUTES = ("scales", "quats", "opacities")
"""Attributes whose noise is clipped to mean +- s x std (the reference)."""


@dataclass(frozen=True)
class ParameterNoise:
    """Per-channel statistics of a parameter drift, one entry per attribute."""

    mean: dict[str, Tensor]
    """float [D] per attribute (e.g. "means": [3], "opacities": [1])."""
    std: dict[str, Tensor]
    """float [D] per attribute, >= 0."""

    def to_dict(self) -> dict[str, dict[str, Tensor]]:
        """Plain tensors, for ``torch.save`` (and ``torch.load(weights_only=True)``)."""
        return {"mean": dict(self.mean), "std": dict(self.std)}

    def scaled(self, strength: float) -> "ParameterNoise":
        """The statistics of the drift times ``strength`` (mean and std both scale)."""
        return ParameterNoise({k: v * strength for k, v in self.mean.items()},
                              {k: v * strength for k, v in self.std.items()})

    @classmethod
    def from_dict(cls, state: dict[str, dict[str, Tensor]]) -> "ParameterNoise":
        """Inverse of :meth:`to_dict`."""
        return cls(dict(state["mean"]), dict(state["std"]))


def parameter_drift(with_view: dict[str, Tensor], without_view: dict[str, Tensor]) -> ParameterNoise:
    """Statistics of Delta = ``with_view`` - ``without_view`` over the Gaussians.

    Args:
        with_view, without_view: Gaussian parameters of the two branches, the same
            attributes with the same rows ([N, ...] each; trailing dims are channels).

    Returns:
        Per attribute of :data:`NOISY_ATTRIBUTES`, the mean and (population) standard
        deviation of Delta over the N rows, per channel (float32 [D]).
    """
    mean, std = {}, {}
    for name in NOISY_ATTRIBUTES:
        a, b = with_view[name].detach(), without_view[name].detach()
        if a.shape != b.shape:
            raise ValueError(f"parameter_drift: '{name}' has shapes {list(a.shape)} and {list(b.shape)}; "
                             "the branches must share their Gaussians")
        delta = (a - b).reshape(len(a), -1).double()
        s, m = torch.std_mean(delta, dim=0, correction=0)
        mean[name], std[name] = m.float().cpu(), s.float().cpu()
    return ParameterNoise(mean, std)


def average_noise(noises: list[ParameterNoise]) -> ParameterNoise:
    """The mean of several views' statistics, attribute by attribute (the reference averages
    the leave-one-out views)."""
    if not noises:
        raise ValueError("average_noise: need at least one leave-one-out statistic")
    names = noises[0].mean.keys()
    mean = {k: torch.stack([n.mean[k] for n in noises]).mean(0) for k in names}
    std = {k: torch.stack([n.std[k] for n in noises]).mean(0) for k in names}
    return ParameterNoise(mean, std)


def perturbed_gaussians(
    params: dict[str, Tensor],
    noise: ParameterNoise,
    generator: torch.Generator,
    clip_range: tuple[float, float] = (0.6, 0.8),
    dropout_range: tuple[float, float] = (0.6, 0.8),
) -> dict[str, Tensor]:
    """Gaussians with the leave-one-out noise added (the repair model's corrupted inputs).

    For each attribute of :data:`NOISY_ATTRIBUTES`: epsilon ~ N(mean, std) per element;
    for :data:`CLIPPED_ATTRIBUTES` clipped to mean +- s x std with s ~ U(clip_range); then
    each element zeroed with probability p ~ U(dropout_range). Other attributes are
    returned unchanged (detached).

    Args:
        params: Gaussian parameters [N, ...] by name (3DGS layout).
        noise: the drift statistics, channels matching ``params``.
        generator: CPU source of every random draw (drawn in attribute order).

    Returns:
        New detached tensors on ``params``' device.
    """
    out = {k: v.detach() for k, v in params.items()}
    for name in NOISY_ATTRIBUTES:
        value = out[name]
        flat_shape = (len(value), noise.mean[name].numel())
        mean, std = noise.mean[name].double(), noise.std[name].double()
        eps = mean + std * torch.randn(flat_shape, generator=generator, dtype=torch.float64)
        if name in CLIPPED_ATTRIBUTES:
            s = _uniform(clip_range, generator)
            eps = torch.minimum(torch.maximum(eps, mean - s * std), mean + s * std)
        keep = torch.rand(flat_shape, generator=generator, dtype=torch.float64) >= _uniform(dropout_range, generator)
        eps = (eps * keep).to(value.dtype).to(value.device)
        out[name] = value + eps.reshape(value.shape)
    return out


def _uniform(bounds: tuple[float, float], generator: torch.Generator) -> float:
    low, high = bounds
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))
