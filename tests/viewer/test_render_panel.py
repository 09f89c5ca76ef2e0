"""The render panel's pure parts: the browser's camera as a library camera, render sizes,
the duty-cycle throttle, and the pictures of each channel."""

import numpy as np
import pytest
import torch
from matplotlib import colormaps

from sparse3d.geometry.cameras import invert_rigid, look_at_viewmats
from sparse3d.geometry.rotations import quats_from_rotmats

pytest.importorskip("viser")
panel = pytest.importorskip("sparse3d.viewer.render_panel")


def test_browser_camera_round_trips_to_the_library_camera():
    viewmats = look_at_viewmats(torch.tensor([[3.0, -2.0, 1.5]]), torch.tensor([[0.2, 0.1, -0.3]]))
    c2w = invert_rigid(viewmats)[0]
    width, height, fov_y = 160, 120, 0.9
    camera = panel.camera_from_viser(quats_from_rotmats(c2w[:3, :3]).numpy(), c2w[:3, 3].numpy(), fov_y, width, height)
    torch.testing.assert_close(camera.viewmats, viewmats, atol=1e-5, rtol=0)
    # The look-at target projects to the image centre, and the vertical field of view is fov_y.
    target = camera.viewmats[0] @ torch.tensor([0.2, 0.1, -0.3, 1.0])
    pixel = camera.Ks[0] @ target[:3]
    torch.testing.assert_close(pixel[:2] / pixel[2], torch.tensor([width / 2, height / 2]), atol=1e-3, rtol=0)
    assert float(camera.Ks[0, 1, 1]) == pytest.approx(0.5 * height / np.tan(fov_y / 2))
    assert float(camera.Ks[0, 0, 0]) == float(camera.Ks[0, 1, 1])  # square pixels


def test_render_size_keeps_the_aspect_and_never_exceeds_the_canvas():
    assert panel.render_size(1280, 720, 128) == (128, 72)
    assert panel.render_size(720, 1280, 512) == (288, 512)
    assert panel.render_size(300, 200, 512) == (300, 200)


def test_throttle_keeps_rendering_to_its_duty_cycle():
    now = [100.0]
    throttle = panel.RenderThrottle(0.1, clock=lambda: now[0])
    assert throttle.wait_seconds() == 0.0
    throttle.rendered(100.0, 100.05)  # a 50 ms render: the next waits 450 ms after it
    now[0] = 100.05
    assert throttle.wait_seconds() == pytest.approx(0.45)
    now[0] = 100.6
    assert throttle.wait_seconds() == 0.0
    with pytest.raises(ValueError, match="duty_cycle"):
        panel.RenderThrottle(0.0)


def test_channel_pictures():
    depth = torch.zeros(4, 5, 1)
    depth[1:3, 1:4, 0] = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    outputs = {
        "rgb": torch.full((4, 5, 3), 0.5).index_put_((torch.tensor([0]),), torch.tensor([2.0, -1.0, 1.0])),
        "alpha": torch.linspace(0, 1, 20).reshape(4, 5, 1),
        "depth": depth,
        "count": torch.zeros(4, 5, dtype=torch.int64),
    }
    assert panel.image_channels(outputs) == ["rgb", "alpha", "depth"]
    rgb = panel.channel_image(outputs, "rgb")
    assert rgb.dtype == np.uint8 and rgb.shape == (4, 5, 3)
    assert rgb[0, 0].tolist() == [255, 0, 255] and rgb[3, 4].tolist() == [128, 128, 128]  # clamped, rounded
    alpha = panel.channel_image(outputs, "alpha")
    assert alpha[0, 0].tolist() == [0, 0, 0] and alpha[3, 4].tolist() == [255, 255, 255]
    picture = panel.channel_image(outputs, "depth")
    assert picture[0, 0].tolist() == [255, 255, 255]  # nothing hit: white
    low, high = torch.quantile(torch.arange(1.0, 7.0), torch.tensor([0.02, 0.98])).tolist()
    for value, (y, x) in [(1.0, (1, 1)), (4.0, (2, 1)), (6.0, (2, 3))]:
        t = min(max((value - low) / (high - low), 0.0), 1.0)
        expected = (np.asarray(colormaps["turbo"](t)[:3]) * 255).round()
        assert picture[y, x].tolist() == expected.tolist()

