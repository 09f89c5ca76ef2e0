"""A sphere rendered analytically (ray-sphere intersection at the pixel centres, not the
rasterizer) through the method contract, and a ring of cameras around it: the oracle of
the exporters' tests."""

import math

import torch

from sparse3d.geometry.cameras import Cameras, intrinsics_from_fov, look_at_viewmats

SIZE = 64
CENTER = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)  # off the origin: a frame mix-up shows
RADIUS = 1.0
PHANTOM_DEPTH = 2.0  # depth reported where the sphere is not: a surface only if masking fails


class AnalyticSphere:
    """Renders a sphere exactly at the pixel centres, with the method contract's outputs.

    Colour is (normal + 1) / 2. Where a ray misses the sphere, alpha is 0, except within
    10 % of the radius of its silhouette, where it is 0.3 (a soft edge); depth there is
    a phantom PHANTOM_DEPTH, which fusion must ignore at the default alpha threshold.
    """

    def get_outputs_for_camera(self, camera: Cameras) -> dict[str, torch.Tensor]:
        v, u = torch.meshgrid(torch.arange(camera.height, dtype=torch.float64) + 0.5,
                              torch.arange(camera.width, dtype=torch.float64) + 0.5, indexing="ij")
        pixels = torch.stack([u, v, torch.ones_like(u)], -1)  # [H, W, 3]
        rays = pixels @ torch.linalg.inv(camera.Ks[0].double()).T  # camera frame, z = 1
        dirs = rays @ camera.viewmats[0, :3, :3].double()  # world frame, R^T d
        offset = camera.centers[0].double() - CENTER
        a, b = (dirs * dirs).sum(-1), dirs @ offset
        disc = b * b - a * (offset @ offset - RADIUS**2)
        hit = disc > 0
        z = (-b - disc.clamp(min=0).sqrt()) / a  # camera-frame depth, since rays have z = 1
        normals = (camera.centers[0].double() + z[..., None] * dirs - CENTER) / RADIUS
        # Squared distance from the ray to the centre, for the soft edge.
        miss2 = (offset @ offset) - b * b / a
        alpha = torch.where(hit, 1.0, torch.where(miss2 < (1.1 * RADIUS) ** 2, 0.3, 0.0))
        return {
            "rgb": torch.where(hit[..., None], (normals + 1) / 2, torch.ones_like(normals)).float(),
            "alpha": alpha[..., None].float(),
            "depth": torch.where(hit, z, torch.full_like(z, PHANTOM_DEPTH))[..., None].float(),
        }


def ring_inputs(count: int = 6) -> Cameras:
    """``count`` views around the sphere, 4 radii out, a little above its equator."""
    az = torch.arange(count, dtype=torch.float64) * 2 * math.pi / count + 0.3
    eyes = CENTER + 4 * torch.stack([az.cos(), az.sin(), torch.full_like(az, 0.3)], -1)
    K = intrinsics_from_fov(40.0, SIZE, SIZE)
    return Cameras(look_at_viewmats(eyes, CENTER.expand(count, 3)), K.expand(count, 3, 3), SIZE, SIZE)
