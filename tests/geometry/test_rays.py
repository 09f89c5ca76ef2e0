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


def test_rays_pass_through_the_given_point_of_their_pixel():
    cameras = Cameras(look_at_viewmats(torch.tensor([[0.0, -4.0, 1.0]]), torch.zeros(1, 3)), intrinsics_from_fov(50.0, 40, 30)[None], 40, 30)
    pixels = image_pixels(40, 30)
    offsets = torch.rand(len(pixels), 2, generator=torch.Generator().manual_seed(0))
    views = torch.zeros(len(pixels), dtype=torch.int64)
    origins, dirs = pixel_rays(cameras, views, pixels, offsets)
    assert torch.allclose(cameras.project(origins + 3.0 * dirs)[0], pixels.float() + offsets, atol=1e-3)
    centre = pixel_rays(cameras, views, pixels, torch.full_like(offsets, 0.5))
    assert all(torch.equal(a, b) for a, b in zip(centre, pixel_rays(cameras, views, pixels)))
