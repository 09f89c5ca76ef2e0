"""Options of the Gaussian rasterizer, grouped so that ``rasterize_gaussians`` stays small."""

from dataclasses import dataclass
from typing import Literal

RenderMode = Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"]
"""What the rasterizer composites, as in gsplat: colours, accumulated depth ("D", the sum
of alpha-weighted camera-space z), expected depth ("ED" = D / alpha), or colours with one
extra depth channel appended."""

RasterizeMode = Literal["classic", "antialiased"]
""""classic" 3DGS, or "antialiased" (Mip-Splatting): opacities are scaled by the
eps2d compensation sqrt(det(cov2d) / det(cov2d + eps2d I))."""

Backend = Literal["auto", "native", "torch"]
"""Which implementation runs: "native" (sparse3d._C CPU kernels), "torch" (the
pure-torch reference), or "auto" (gsplat for CUDA tensors, else native when the
extension is built, else torch)."""


@dataclass(frozen=True)
class RasterConfig:
    """Rendering options of :func:`sparse3d.render.rasterize_gaussians` (gsplat defaults)."""

    near_plane: float = 0.01
    """Gaussians with camera-space z at or below this are culled."""
    far_plane: float = 1e10
    """Gaussians with camera-space z at or beyond this are culled."""
    eps2d: float = 0.3
    """Low-pass filter added to the diagonal of every 2-D covariance, in pixels squared."""
    radius_clip: float = 0.0
    """Gaussians whose screen radii (both axes, pixels) are at most this are culled."""
    tile_size: int = 16
    """Side of the square pixel tiles that Gaussians are binned into (1..64)."""
    render_mode: RenderMode = "RGB"
    """Which channels are composited; see :data:`RenderMode`."""
    rasterize_mode: RasterizeMode = "classic"
    """Classic or antialiased opacities; see :data:`RasterizeMode`."""
    absgrad: bool = False
    """Also accumulate |dL/dmeans2d| per pixel into ``meta.means2d.absgrad`` (AbsGS, for
    densification). The native backend always does; gsplat only when this is set; the
    torch reference cannot, and refuses it."""
    backend: Backend = "auto"
    """Implementation to run; see :data:`Backend`."""

    def __post_init__(self) -> None:
        if not 0.0 < self.near_plane < self.far_plane:
            raise ValueError(
                f"RasterConfig: need 0 < near_plane < far_plane, got {self.near_plane} and {self.far_plane}"
            )
        if self.eps2d < 0.0 or self.radius_clip < 0.0:
            raise ValueError(f"RasterConfig: eps2d and radius_clip must be >= 0, got {self.eps2d}, {self.radius_clip}")
        if not 1 <= self.tile_size <= 64:
            raise ValueError(f"RasterConfig: tile_size must be in [1, 64], got {self.tile_size}")
        for name, value, allowed in (
            ("render_mode", self.render_mode, RenderMode.__args__),
            ("rasterize_mode", self.rasterize_mode, RasterizeMode.__args__),
            ("backend", self.backend, Backend.__args__),
        ):
            if value not in allowed:
                raise ValueError(f"RasterConfig: {name} must be one of {allowed}, got {value!r}")

    @property
    def has_color(self) -> bool:
        """True when the output holds colour channels."""
        return self.render_mode.startswith("RGB")

    @property
    def depth_mode(self) -> Literal["D", "ED"] | None:
        """The depth channel's kind ("D" or "ED"), or None for colour only."""
        mode = self.render_mode.removeprefix("RGB").removeprefix("+")
        return mode or None  # type: ignore[return-value]
