"""The orbit export: views once round the novel-view ellipse, an image grid and a video."""

import importlib.util
import math

import pytest
import torch
from PIL import Image
from reconstruction.sphere_cases import SIZE, AnalyticSphere, ring_inputs

from sparse3d.reconstruction import orbit
from sparse3d.reconstruction.novel_views import novel_view_rig
from sparse3d.reconstruction.orbit import (
    OrbitConfig,
    image_grid,
    orbit_cameras,
    write_orbit,
)


def test_orbit_starts_at_the_first_input_and_goes_once_round():
    inputs = ring_inputs(6)
    cameras = orbit_cameras(inputs, 8)
    rig = novel_view_rig(inputs)
    torch.testing.assert_close(cameras.centers[0], inputs.centers[0], atol=1e-4, rtol=0)
    planar = (cameras.centers.double() - rig.origin) @ rig.axes[:2].T - rig.center  # [8, 2] on the ellipse
    angles = torch.atan2(planar[:, 1] / rig.semi_axes[1], planar[:, 0] / rig.semi_axes[0])  # its parameter
    steps = torch.remainder(torch.diff(angles), 2 * math.pi)
    torch.testing.assert_close(steps, torch.full((7,), 2 * math.pi / 8, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(cameras.Ks, inputs.Ks[:1].expand(8, 3, 3))


def test_image_grid_is_row_major_with_white_padding():
    images = torch.arange(5, dtype=torch.uint8).view(5, 1, 1, 1).expand(5, 2, 3, 3)
    grid = image_grid(images, 2)
    assert grid.shape == (3 * 2, 2 * 3, 3)
    assert [int(grid[2 * r, 3 * c, 0]) for r in range(3) for c in range(2)] == [0, 1, 2, 3, 4, 255]


def test_write_orbit_writes_the_grid_and_a_video_of_every_frame(tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    files = write_orbit(AnalyticSphere(), ring_inputs(), tmp_path / "out", OrbitConfig(frames=5, columns=3))
    assert files.strip == tmp_path / "out" / "orbit.png" and files.skipped is None
    with Image.open(files.strip) as strip:
        assert strip.size == (3 * SIZE, 2 * SIZE) and strip.mode == "RGB"
        # The sphere is in the middle of every frame, the background white.
        assert strip.getpixel((SIZE // 2, SIZE // 2)) != (255, 255, 255)
        assert strip.getpixel((0, 0)) == (255, 255, 255)
    reader = imageio_ffmpeg.read_frames(str(files.video))
    meta = next(reader)
    assert meta["size"] == (SIZE, SIZE) and meta["fps"] == 12 and sum(1 for _ in reader) == 5


def test_without_imageio_ffmpeg_only_the_grid_is_written(tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(orbit.importlib.util, "find_spec",
                        lambda name, *a: None if name == "imageio_ffmpeg" else find_spec(name, *a))
    files = write_orbit(AnalyticSphere(), ring_inputs(), tmp_path, OrbitConfig(frames=2))
    assert files.video is None and files.skipped == "imageio-ffmpeg is not installed (pip install 'sparse3d[video]')"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orbit.png"]
