"""Camera rays: the world-frame origin and direction through a pixel.

Pixel (u, v) covers ``[u, u + 1) x [v, v + 1)`` (cameras.py), so the ray through its
centre leaves the camera centre towards ``K^-1 (u + 0.5, v + 0.5, 1)``.
"""

import torch
from torch import Tensor

from sparse3d.geometry.cameras import Cameras


def pixel_rays(cameras: Cameras, views: Tensor, pixels: Tensor, offsets: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Rays through pixels of some cameras (no distortion), by default through their centres.

    Args:
        cameras: C cameras.
        views: int64 [R] which camera each ray leaves.
        pixels: int64 [R, 2] (u, v) pixel of each ray, column then row.
        offsets: float [R, 2] where in its pixel each ray passes, (0, 0) the pixel's
            top-left corner and (1, 1) its bottom-right one; None: (0.5, 0.5), the centre.

    Returns:
        origins: float32 [R, 3] camera centres, world frame;
        dirs: float32 [R, 3] unit directions, world frame, so that a distance t along a ray
        is a world distance.
    """
    viewmats, Ks = cameras.viewmats[views].float(), cameras.Ks[views].float()
    uv = pixels.float() + (0.5 if offsets is None else offsets.float())
    x = (uv[:, 0] - Ks[:, 0, 2]) / Ks[:, 0, 0]
    y = (uv[:, 1] - Ks[:, 1, 2]) / Ks[:, 1, 1]
    cam_dirs = torch.stack([x, y, torch.ones_like(x)], -1)
    rot = viewmats[:, :3, :3]  # world-to-camera: the camera axes are its rows
    dirs = torch.nn.functional.normalize((rot.transpose(1, 2) @ cam_dirs[..., None])[..., 0], dim=-1)
    origins = -(rot.transpose(1, 2) @ viewmats[:, :3, 3:4])[..., 0]
    return origins, dirs


def image_pixels(width: int, height: int, device: torch.device | str = "cpu") -> Tensor:
    """int64 [H * W, 2] (u, v) of every pixel of a W x H image, row by row."""
    v, u = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    return torch.stack([u.flatten(), v.flatten()], -1)


def camera_depths(cameras: Cameras, views: Tensor, dirs: Tensor) -> Tensor:
    """float [R] camera-frame z of a unit distance along each ray ``dirs`` [R, 3] of
    cameras ``views`` [R]: multiply a distance t by it to get the depth."""
    forward = cameras.viewmats[views, 2, :3].to(dirs.dtype)  # the camera's +z in the world frame
    return (forward * dirs).sum(-1)


def subpixel_offsets(s: int, device: torch.device | str = "cpu") -> Tensor:
    """float32 [S * S, 2] the centres of an S x S grid of cells in the unit pixel, row by
    row (:func:`pixel_rays`' offsets; S = 1: the pixel's centre)."""
    centres = (torch.arange(s, dtype=torch.float32, device=device) + 0.5) / s
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([u.flatten(), v.flatten()], -1)
