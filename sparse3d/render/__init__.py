"""Rendering: cameras, the Gaussian rasterizer, densification strategies, image metrics."""

from sparse3d.render.rasterize import RasterConfig, RasterMeta, rasterize_gaussians

__all__ = ["RasterConfig", "RasterMeta", "rasterize_gaussians"]
