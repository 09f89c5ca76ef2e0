"""Camera path export without a browser: the path's cameras start and end at the
keyframes, the video's frames are the method's renders along it, and it is written into
the run directory as an MP4 of the asked length."""

import math

import numpy as np
import pytest
import torch
from splat_runs import free_port, train_splat

from sparse3d.engine.run import load_trained_method
from sparse3d.geometry.rotations import quats_from_rotmats
from sparse3d.synthetic.objects.generator import (
    SyntheticObjectsConfig,
    write_synthetic_objects,
)

pytest.importorskip("viser")
paths = pytest.importorskip("sparse3d.viewer.camera_path_panel")
viewer_app = pytest.importorskip("sparse3d.viewer.app")
render_panel = pytest.importorskip("sparse3d.viewer.render_panel")


def _keyframe(yaw: float, position) -> "paths.Keyframe":
    # Looking along the rotated +z (OpenCV): a turn about the world's z axis.
    half = yaw / 2
    return paths.Keyframe((math.cos(half), 0.0, 0.0, math.sin(half)), tuple(position), 0.8, 4 / 3)


def test_path_cameras_start_and_end_at_the_keyframes():
    keys = [_keyframe(0.0, (0, 0, -3)), _keyframe(0.5, (1, 0, -3)), _keyframe(1.0, (2, 1, -2))]
    cameras = paths.path_cameras(keys, 9, long_side=64)
    assert (cameras.width, cameras.height, len(cameras)) == (64, 48, 9)
    for frame, key in ((0, keys[0]), (4, keys[1]), (8, keys[2])):
        expected = render_panel.camera_from_viser(np.array(key.wxyz), np.array(key.position), key.fov_y, 64, 48)
        torch.testing.assert_close(cameras.viewmats[frame], expected.viewmats[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(cameras.Ks[frame], expected.Ks[0])
    with pytest.raises(ValueError, match="two keyframes"):
        paths.path_cameras(keys[:1], 9)


def test_video_is_the_methods_renders_along_the_path(tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    data = write_synthetic_objects(tmp_path / "objects", SyntheticObjectsConfig(objects=("box",), resolution=32,
                                                                                 num_test_views=1))[0]
    run = tmp_path / "run"
    train_splat(data, run, steps=2)
    viewer = viewer_app.RunViewer(run, port=free_port())
    try:
        viewer.refresh()
        panel = viewer.camera_path
        assert panel.render_video() is None and "two keyframes" in panel.status.content
        _, method, _ = load_trained_method(run, torch.device("cpu"))
        c2w = torch.linalg.inv(method.data.cameras.viewmats[:2].double())
        for pose in c2w:
            panel.keyframes.append(paths.Keyframe(tuple(quats_from_rotmats(pose[:3, :3]).tolist()),
                                                  tuple(pose[:3, 3].tolist()), 0.7, 1.0))
        panel.frames.value = 6
        path = panel.render_video()
        assert path == run / paths.VIDEO_NAME and path.stat().st_size > 0
        assert imageio_ffmpeg.count_frames_and_secs(str(path))[0] == 6
        cameras = paths.path_cameras(panel.keyframes, 6)
        frames = paths.path_frames(method, cameras)
        with torch.no_grad():
            first = method.get_outputs_for_camera(cameras[:1])["rgb"]
        torch.testing.assert_close(frames[0], (first.clamp(0, 1) * 255).round().to(torch.uint8))
    finally:
        viewer.stop()
