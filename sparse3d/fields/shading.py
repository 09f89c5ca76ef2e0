"""TensoRF's feature shader (``MLPRender_Fea``): colour from an appearance feature and the
view direction, shared by Strivec and the dense TensoRF baseline. Its layers are
sparse3d.nn.Linear, whose bits do not depend on the thread count."""

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from sparse3d.core.elementwise import sigmoid, softplus
from sparse3d.engine.config import at_least, check_ranges, positive
from sparse3d.nn.linear import Linear


@dataclass
class DensityActivation:
    """How a field's raw density feature becomes a density (TensoRF's softplus with shift)."""

    density_shift: float = -10.0
    """Added to the density feature before softplus (so empty space starts transparent)."""
    distance_scale: float = field(default=25.0, metadata=positive())
    """Density = distance_scale x softplus(feature + shift)."""

    def __post_init__(self) -> None:
        check_ranges(self)

    def density(self, feature: Tensor) -> Tensor:
        """float [S] densities (world units^-1) of raw features ``feature`` [S]."""
        return self.distance_scale * softplus(feature + self.density_shift)


@dataclass
class ShadedFieldConfig(DensityActivation):
    """What the factorised fields (Strivec, TensoRF-VM) share: the density activation, the
    appearance feature, the shader and the initial spread of their factors."""

    app_dim: int = field(default=27, metadata=at_least(1))
    """Width of the appearance feature the basis maps the appearance components to."""
    init_std: float = field(default=0.1, metadata=positive())
    """Standard deviation of the factors' initial values."""
    hidden: int = field(default=128, metadata=at_least(1))
    """Width of the shader's hidden layers."""


def positional_encoding(x: Tensor, frequencies: int) -> Tensor:
    """float [..., 2 F C] ``sin`` then ``cos`` of ``x`` [..., C] times 1, 2, ..., 2^(F-1)
    (TensoRF's encoding, without pi)."""
    bands = 2.0 ** torch.arange(frequencies, dtype=x.dtype, device=x.device)
    scaled = (x[..., None] * bands).flatten(-2)
    return torch.cat([scaled.sin(), scaled.cos()], -1)


class FeatureShader(nn.Module):
    """MLP from [feature, direction, PE(feature), PE(direction)] to a sigmoid RGB."""

    def __init__(self, feature_dim: int, hidden: int = 128, feature_pe: int = 2, view_pe: int = 2) -> None:
        super().__init__()
        self.feature_pe, self.view_pe = feature_pe, view_pe
        width = feature_dim + 3 + 2 * feature_pe * feature_dim + 2 * view_pe * 3
        self.mlp = nn.Sequential(
            Linear(width, hidden), nn.ReLU(inplace=True),
            Linear(hidden, hidden), nn.ReLU(inplace=True),
            Linear(hidden, 3),
        )
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, features: Tensor, dirs: Tensor) -> Tensor:
        """float [S, 3] colours in (0, 1) of appearance ``features`` [S, F] seen along unit
        world directions ``dirs`` [S, 3]."""
        parts = [features, dirs]
        if self.feature_pe > 0:
            parts.append(positional_encoding(features, self.feature_pe))
        if self.view_pe > 0:
            parts.append(positional_encoding(dirs, self.view_pe))
        return sigmoid(self.mlp(torch.cat(parts, -1)))
