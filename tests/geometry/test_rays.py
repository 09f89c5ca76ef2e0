"""Camera rays go through the pixel centres they are made for."""

import torch

from sparse3d.geometry.cameras import Cameras, intrinsics_from_fov, look_at_viewmats
from sparse3d.geometry.rays import camera_depths, image_pixels, pixel_rays


def test_rays_project_back_onto_their_pixel_centres():
    eyes = torch.tensor([[0.0, -4.0, 1.0], [3.0, 2.0, -1.0]])
    cameras = Cameras(look_at_viewmats(eyes, torch.zeros(2, 3)), intrinsics_from_fov(50.0, 40, 30).expand(2, 3, 3).clone(), 40, 30)
    pixels = image_pixels(40, 30)
    for view in range(2):
        views = torch.full((len(pixels),), view)
        origins, dirs = pixel_rays(cameras, views, pixels)
        assert torch.allclose(origins, cameras.centers[view].expand_as(origins), atol=1e-5)
        assert torch.allclose(dirs.norm(dim=1), torch.ones(len(dirs)), atol=1e-6)
        t = 2.5
        uv = cameras[view].project(origins + t * dirs)[0]
        assert torch.allclose(uv, pixels.float() + 0.5, atol=1e-3)
        # a distance t along the ray is camera depth t * camera_depths
        depth = cameras[view].to_camera(origins + t * dirs)[0, :, 2]
        assert torch.allclose(depth, t * camera_depths(cameras, views, dirs), atol=1e-4)


def test_image_pixels_run_row_by_row():
    assert image_pixels(3, 2).tolist() == [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]]
