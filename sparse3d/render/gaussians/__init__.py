"""The Gaussian rasterizer's stages, one file each.

- ``config``: :class:`RasterConfig` and the render / rasterize modes.
- ``sh``: spherical-harmonics colours.
- ``projection``: EWA projection of 3-D Gaussians into C cameras (native kernel and torch
  reference).
- ``tiles``: binning of projected Gaussians into depth-sorted per-tile lists (native
  kernel and torch reference).
- ``composite``: front-to-back compositing, native kernel and torch reference.

Each native op (cuda/cpu/gaussian_*.cpp, math in cuda/include/sparse3d/gaussian*.h) has
its fake kernel and autograd formula registered next to its torch reference. The public
entry point is :func:`sparse3d.render.rasterize.rasterize_gaussians`.
"""
