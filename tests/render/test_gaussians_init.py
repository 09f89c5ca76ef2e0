"""Initial Gaussians: shapes, neighbour-sized scales, and SH that render the given colours."""

import math

import torch

from sparse3d.core.knn import mean_neighbour_distance
from sparse3d.geometry.cameras import Cameras, intrinsics_from_fov, look_at_viewmats
from sparse3d.render.gaussians.init import initial_gaussians, random_points, scene_scale
from sparse3d.render.gaussians.sh import sh_to_color


def test_initial_gaussians_render_their_colours_at_their_neighbour_scale():
    g = torch.Generator().manual_seed(0)
    points, rgbs = random_points(50, 2.0, g)
    assert points.shape == rgbs.shape == (50, 3) and points.abs().max() <= 2.0 and 0 <= rgbs.min() <= rgbs.max() < 1
    params = initial_gaussians(points, rgbs, 2, 0.1, g)
    shapes = {k: tuple(v.shape) for k, v in params.items()}
    assert shapes == {"means": (50, 3), "scales": (50, 3), "quats": (50, 4), "opacities": (50,),
                      "sh0": (50, 1, 3), "shN": (50, 8, 3)}
    torch.testing.assert_close(params["scales"].exp(), mean_neighbour_distance(points, 3)[:, None].expand(50, 3))
    torch.testing.assert_close(params["quats"].norm(dim=1), torch.ones(50))
    torch.testing.assert_close(params["opacities"].sigmoid(), torch.full((50,), 0.1))
    # The degree-0 band alone gives back the colours, from any view direction.
    torch.testing.assert_close(sh_to_color(0, torch.randn(50, 3, generator=g), params["sh0"]), rgbs)
    assert not params["shN"].any()


def test_scene_scale_is_the_3dgs_camera_extent():
    eyes = torch.tensor([[2.0, 0.0, 0.0], [-2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    cams = Cameras(look_at_viewmats(eyes, torch.zeros(3, 3)), intrinsics_from_fov(40.0, 8, 8).expand(3, 3, 3), 8, 8)
    centre = eyes.mean(0)
    assert math.isclose(scene_scale(cams), 1.1 * float((eyes - centre).norm(dim=1).max()), rel_tol=1e-6)
