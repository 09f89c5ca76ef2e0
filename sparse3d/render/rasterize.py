"""3-D Gaussian splatting rasterizer with gsplat's ``rasterization`` semantics.

Three backends behind one call (chosen by ``RasterConfig.backend``):

- **native** (CPU): the sparse3d._C kernels: projection (analytic backward), tile binning
  with a deterministic (tile, depth, index) order, and compositing with early termination
  and an analytic backward; multi-threaded over Gaussians / tiles, and bitwise identical
  for any thread count. With ``viewmats`` or ``Ks`` requiring grad, the torch projection
  is used so that camera gradients exist.
- **torch**: the pure-torch projection (autograd), then the tile-chunked compositing reference;
  the fallback when the extension is not built.
- **gsplat** (CUDA tensors, "auto"): ``gsplat.rasterization`` imported lazily. Options map
  one to one: ``near_plane``, ``far_plane``, ``eps2d``, ``radius_clip``, ``tile_size``,
  ``render_mode``, ``rasterize_mode``, ``absgrad``; ``sh_degree`` and ``backgrounds`` pass
  through; ``packed=False`` so that the meta tensors are dense [C, N, ...] like ours.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from sparse3d._native import HAS_NATIVE
from sparse3d.geometry.cameras import camera_centers
from sparse3d.render.gaussians.composite import (
    rasterize_to_pixels,
    rasterize_to_pixels_ref,
)
from sparse3d.render.gaussians.config import RasterConfig
from sparse3d.render.gaussians.projection import (
    project_gaussians,
    project_gaussians_ref,
)
from sparse3d.render.gaussians.sh import MAX_SH_DEGREE, num_sh_bases, sh_to_color
from sparse3d.render.gaussians.tiles import bin_gaussians

__all__ = ["RasterConfig", "RasterMeta", "rasterize_gaussians"]

_DEFAULT_CONFIG = RasterConfig()


@dataclass(frozen=True)
class RasterMeta:
    """What densification and debugging need from a render of N Gaussians into C cameras."""

    means2d: Tensor
    """float [C, N, 2] projected centres; call ``retain_grad()`` before backward to read
    the image-plane gradient, and ``.absgrad`` after it (native / gsplat with absgrad)."""
    radii: Tensor
    """int32 [C, N, 2] screen radii in pixels; 0 where culled."""
    depths: Tensor
    """float [C, N] camera-space z."""
    conics: Tensor
    """float [C, N, 3] inverse 2-D covariances (inv00, inv01, inv11)."""
    opacities: Tensor
    """float [C, N] opacities as composited (times the compensation when antialiased)."""
    width: int
    """Image width W."""
    height: int
    """Image height H."""
    n_cameras: int
    """Number of cameras C."""


def rasterize_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    config: RasterConfig = _DEFAULT_CONFIG,
    *,
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,
) -> tuple[Tensor, Tensor, RasterMeta]:
    """Renders N 3-D Gaussians into C pinhole cameras.

    Args:
        means: float [N, 3] world-frame centres.
        quats: float [N, 4] rotations (w, x, y, z), need not be normalised.
        scales: float [N, 3] standard deviations (post-activation, not log).
        opacities: float [N] in [0, 1] (post-sigmoid).
        colors: float [N, D] or [C, N, D] colours, or with ``sh_degree`` float [N, K, 3]
            SH coefficients, K >= (sh_degree + 1)^2.
        viewmats: float [C, 4, 4] world-to-camera transforms (OpenCV: +x right, +y down,
            +z forward).
        Ks: float [C, 3, 3] pinhole intrinsics in pixels.
        width, height: image size W, H.
        config: rendering options (:class:`RasterConfig`).
        sh_degree: SH bands to evaluate (0..3), or None when ``colors`` are colours.
        backgrounds: float [C, D] colours behind the Gaussians (colour channels only), or None.

    Returns:
        render: float [C, H, W, D'] with D' = D (RGB), 1 (D, ED) or D + 1 (RGB+D, RGB+ED;
        depth last). alphas: float [C, H, W, 1]. meta: :class:`RasterMeta`.
    """
    n_colors = _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree)
    if backgrounds is not None and (not config.has_color or backgrounds.shape != (viewmats.shape[0], n_colors)):
        raise ValueError(
            f"rasterize_gaussians: backgrounds must be [C, D] = [{viewmats.shape[0]}, {n_colors}] "
            f"with a colour render_mode, got {list(backgrounds.shape)} with {config.render_mode!r}"
        )
    backend = _resolve_backend(config, means.device)
    if backend == "gsplat":
        return _rasterize_gsplat(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height, config, sh_degree, backgrounds
        )
    if backend == "torch" and config.absgrad:
        raise ValueError("rasterize_gaussians: absgrad needs the native or gsplat backend, not 'torch'")

    # Camera gradients (pose refinement) come from the reference projection's autograd.
    native_projection = backend == "native" and not (viewmats.requires_grad or Ks.requires_grad)
    project = project_gaussians if native_projection else project_gaussians_ref
    proj = project(
        means, quats, scales, viewmats, Ks, width, height,
        config.near_plane, config.far_plane, config.eps2d, config.radius_clip,
    )
    opac = opacities[None].expand_as(proj.depths)
    if config.rasterize_mode == "antialiased":
        opac = opac * proj.compensations
    feats = _render_features(means, colors, viewmats, proj.depths, config, sh_degree)
    if backend == "native":
        bins = bin_gaussians(proj.means2d, proj.radii, proj.depths, width, height, config.tile_size)
        render, alphas = rasterize_to_pixels(
            proj.means2d, proj.conics, feats, opac, bins, width, height, config.tile_size
        )
    else:
        render, alphas = rasterize_to_pixels_ref(
            proj.means2d, proj.conics, feats, opac, proj.radii, proj.depths, width, height, config.tile_size
        )
    if config.depth_mode == "ED":
        render = torch.cat([render[..., :-1], render[..., -1:] / alphas.clamp_min(1e-10)], dim=-1)
    if backgrounds is not None:
        color = render[..., :n_colors] + backgrounds[:, None, None, :] * (1.0 - alphas)
        render = torch.cat([color, render[..., n_colors:]], dim=-1)
    meta = RasterMeta(proj.means2d, proj.radii, proj.depths, proj.conics, opac, width, height, viewmats.shape[0])
    return render, alphas, meta


def _render_features(
    means: Tensor, colors: Tensor, viewmats: Tensor, depths: Tensor, config: RasterConfig, sh_degree: int | None
) -> Tensor:
    """float [C, N, D'] the channels to composite: colours and/or camera-space depth."""
    C, N = depths.shape
    feats = []
    if config.has_color:
        if sh_degree is not None:
            dirs = means[None] - camera_centers(viewmats)[:, None]  # [C, N, 3]
            feats.append(sh_to_color(sh_degree, dirs, colors[None].expand(C, -1, -1, -1)))
        else:
            feats.append(colors.expand(C, N, colors.shape[-1]))
    if config.depth_mode is not None:
        feats.append(depths[..., None])
    return feats[0] if len(feats) == 1 else torch.cat(feats, dim=-1)


def _resolve_backend(config: RasterConfig, device: torch.device) -> str:
    """"native", "torch" or "gsplat" for tensors on ``device``."""
    if config.backend == "auto":
        if device.type == "cuda":
            return "gsplat"
        return "native" if HAS_NATIVE and device.type == "cpu" else "torch"
    if config.backend == "native" and (not HAS_NATIVE or device.type != "cpu"):
        raise ValueError(
            "rasterize_gaussians: backend='native' needs CPU tensors and the built sparse3d._C "
            f"extension (device {device}, extension built: {HAS_NATIVE})"
        )
    return config.backend


def _rasterize_gsplat(
    means, quats, scales, opacities, colors, viewmats, Ks, width, height, config, sh_degree, backgrounds
) -> tuple[Tensor, Tensor, RasterMeta]:
    """gsplat.rasterization on CUDA tensors, with its meta dict turned into a RasterMeta."""
    try:
        import gsplat
    except ImportError as err:
        raise RuntimeError(
            "rasterize_gaussians: CUDA tensors are rendered by gsplat, which is not installed "
            "(pip install gsplat), or pass CPU tensors"
        ) from err
    render, alphas, info = gsplat.rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        near_plane=config.near_plane, far_plane=config.far_plane, radius_clip=config.radius_clip,
        eps2d=config.eps2d, sh_degree=sh_degree, packed=False, tile_size=config.tile_size,
        backgrounds=backgrounds, render_mode=config.render_mode, absgrad=config.absgrad,
        rasterize_mode=config.rasterize_mode,
    )
    meta = RasterMeta(
        info["means2d"], info["radii"], info["depths"], info["conics"], info["opacities"],
        width, height, viewmats.shape[0],
    )
    return render, alphas, meta


def _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree) -> int:
    """Validates shapes, dtypes and devices; returns the number of colour channels D."""
    tensors = {"means": means, "quats": quats, "scales": scales, "opacities": opacities, "colors": colors,
               "viewmats": viewmats, "Ks": Ks}
    for name, t in tensors.items():
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise TypeError(f"rasterize_gaussians: {name} must be a float tensor, got {getattr(t, 'dtype', type(t))}")
        if t.dtype != means.dtype or t.device != means.device:
            raise ValueError(
                f"rasterize_gaussians: {name} is {t.dtype} on {t.device}, but means is {means.dtype} on {means.device}"
            )
    N = means.shape[0] if means.dim() == 2 else -1
    C = viewmats.shape[0] if viewmats.dim() == 3 else -1
    expected = {"means": (N, 3), "quats": (N, 4), "scales": (N, 3), "opacities": (N,),
                "viewmats": (C, 4, 4), "Ks": (C, 3, 3)}
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape or min(shape) < 0:
            raise ValueError(
                f"rasterize_gaussians: {name} must be {list(shape)} (N Gaussians, C cameras), "
                f"got {list(tensors[name].shape)}"
            )
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise ValueError(f"rasterize_gaussians: width and height must be positive ints, got {width!r}, {height!r}")
    if sh_degree is not None:
        if not 0 <= sh_degree <= MAX_SH_DEGREE:
            raise ValueError(f"rasterize_gaussians: sh_degree must be in 0..{MAX_SH_DEGREE}, got {sh_degree}")
        K = num_sh_bases(sh_degree)
        if colors.dim() != 3 or colors.shape[0] != N or colors.shape[1] < K or colors.shape[2] != 3:
            raise ValueError(
                f"rasterize_gaussians: with sh_degree={sh_degree}, colors must be SH coefficients "
                f"[N, K >= {K}, 3] = [{N}, >={K}, 3], got {list(colors.shape)}"
            )
        return 3
    if not ((colors.dim() == 2 and colors.shape[0] == N) or (colors.dim() == 3 and colors.shape[:2] == (C, N))):
        raise ValueError(
            f"rasterize_gaussians: colors must be [N, D] = [{N}, D] or [C, N, D] = [{C}, {N}, D], "
            f"got {list(colors.shape)} (pass sh_degree for SH coefficients)"
        )
    return colors.shape[-1]
