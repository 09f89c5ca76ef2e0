"""The web viewer serves a run on 127.0.0.1, follows new checkpoints, and draws every scene
layer type."""

import math
import socket
import urllib.request

import numpy as np
import pytest
import torch

from sparse3d.engine.checkpoint import list_checkpoints, load_checkpoint
from sparse3d.engine.distributed import World
from sparse3d.engine.registry import discover_methods
from sparse3d.engine.run import load_trained_method
from sparse3d.engine.scene import Boxes3D, CameraFrusta, Mesh, PointCloud, Splats
from sparse3d.engine.trainer import Trainer
from sparse3d.geometry.cameras import Cameras, intrinsics_from_fov, look_at_viewmats
from sparse3d.render.ply import write_points_ply
from sparse3d.synthetic.objects.generator import (
    SyntheticObjectsConfig,
    write_synthetic_objects,
)

viser = pytest.importorskip("viser")
viewer_app = pytest.importorskip("sparse3d.viewer.app")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_splat(data, out, steps):
    config = discover_methods()["splat"].default_config()
    config.data, config.output = data, out
    config.trainer.max_steps, config.trainer.ckpt_every, config.trainer.progress = steps, 2, False
    config.model.num_random = 300
    Trainer(config, "splat", out, World()).train()


def test_viewer_shows_the_newest_checkpoint(tmp_path):
    data = write_synthetic_objects(tmp_path / "objects", SyntheticObjectsConfig(objects=("box",), resolution=32, num_test_views=1))[0]
    run = tmp_path / "run"
    train_splat(data, run, steps=2)
    viewer = viewer_app.RunViewer(run, host="127.0.0.1", port=free_port())
    try:
        assert viewer.refresh() and viewer.shown_step == 2
        assert not viewer.refresh()  # nothing new
        n = load_checkpoint(list_checkpoints(run)[-1][1])["method"]["splats.means"].shape[0]
        splats, frusta = viewer.shown_layers
        assert splats.means.shape == (n, 3)
        assert frusta.images.shape[0] == 9  # the training views
        page = urllib.request.urlopen(f"http://127.0.0.1:{viewer.port}/", timeout=10).read().decode()
        assert "<title>Viser</title>" in page

        train_splat(data, run, steps=4)  # training goes on (a longer schedule): the viewer follows
        assert viewer.refresh() and viewer.shown_step == 4
        newest = load_checkpoint(list_checkpoints(run)[-1][1])["method"]["splats.means"]
        torch.testing.assert_close(viewer.shown_layers[0].means, newest, atol=0, rtol=0)
    finally:
        viewer.stop()


def test_viewer_loads_new_weights_into_the_method_it_built(tmp_path):
    config = SyntheticObjectsConfig(objects=("box",), resolution=16, num_test_views=1, supersampling=1)
    data = write_synthetic_objects(tmp_path / "objects", config)[0]
    run = tmp_path / "run"
    train_splat(data, run, steps=4)  # checkpoints at steps 2 and 4
    newest = list_checkpoints(run)[-1][1]
    hidden = newest.rename(tmp_path / "later.pt")  # as if training had only reached step 2
    viewer = viewer_app.RunViewer(run, host="127.0.0.1", port=free_port())
    try:
        assert viewer.refresh() and viewer.shown_step == 2
        built = viewer.panel.scene
        hidden.rename(newest)  # step 4 arrives, with the same config
        assert viewer.refresh() and viewer.shown_step == 4
        assert viewer.panel.scene is built  # not rebuilt: only the weights were loaded
        weights = load_checkpoint(newest)["method"]["splats.means"]
        torch.testing.assert_close(viewer.shown_layers[0].means, weights, atol=0, rtol=0)
    finally:
        viewer.stop()


def test_default_host_is_loopback_and_empty_run_is_not_an_error(tmp_path):
    viewer = viewer_app.RunViewer(tmp_path, port=free_port())
    try:
        assert viewer.server.get_host() == "127.0.0.1"
        assert not viewer.refresh()  # no checkpoint yet: nothing to show
        assert "no checkpoint" in viewer.status  # the page says so, rather than "loading ..."
    finally:
        viewer.stop()


def test_run_without_checkpoint_waits_and_picks_up_the_first_one(tmp_path, capsys, monkeypatch):
    data = write_synthetic_objects(tmp_path / "objects", SyntheticObjectsConfig(objects=("box",), resolution=16, num_test_views=1, supersampling=1))[0]
    run = tmp_path / "run"
    run.mkdir()
    viewers = []
    monkeypatch.setattr(viewer_app.RunViewer, "serve_forever", lambda self, poll_seconds=2.0: viewers.append(self))
    viewer_app.serve(run, "127.0.0.1", free_port())  # returns at once: serve_forever is stubbed
    (viewer,) = viewers
    try:
        out = capsys.readouterr().out
        assert "sparse3d: viewer at http://127.0.0.1:" in out and f"no checkpoint in {run} yet" in out
        assert "no checkpoint" in viewer.status and viewer.shown_step is None
        train_splat(data, run, steps=2)
        assert viewer.refresh() and viewer.shown_step == 2
        assert "step 2" in viewer.status
    finally:
        viewer.stop()


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_bad_run_directory_raises_before_serving(tmp_path, kind):
    run = tmp_path / "run"
    if kind == "file":
        run.write_text("")
    with pytest.raises(FileNotFoundError if kind == "missing" else NotADirectoryError, match="run"):
        viewer_app.RunViewer(run, port=free_port())


def test_every_layer_type_is_drawn_by_its_type():
    eyes = torch.tensor([[0.0, -4.0, 1.0], [4.0, 0.0, 1.0]])
    cams = Cameras(look_at_viewmats(eyes, torch.zeros(2, 3)), intrinsics_from_fov(50.0, 16, 12).expand(2, 3, 3), 16, 12)
    lidar_to_world = torch.eye(4)
    lidar_to_world[:3, 3] = torch.tensor([1.0, 2.0, 0.0])
    layers = [
        Splats(torch.zeros(5, 3), 0.01 * torch.eye(3).expand(5, 3, 3), torch.rand(5, 3), torch.rand(5)),
        CameraFrusta(cams, torch.zeros(2, 12, 16, 3, dtype=torch.uint8)),
        PointCloud(torch.rand(7, 3), torch.zeros(7, 3, dtype=torch.uint8)),
        Boxes3D(torch.tensor([[1.0, 0.0, 0.5, 4.0, 2.0, 1.5, math.pi / 2], [0.0, 5.0, 0.5, 1.0, 1.0, 1.0, 0.0]]),
                labels=torch.tensor([0, 3]), scores=torch.tensor([0.9, 0.4]), lidar_to_world=lidar_to_world),
        Mesh(torch.eye(3), torch.tensor([[0, 1, 2]]), torch.full((3, 3), 200, dtype=torch.uint8)),
        # Without the optional fields: one colour for all, the LiDAR frame as the world frame.
        PointCloud(torch.rand(4, 3)),
        Boxes3D(torch.zeros(1, 7)),
        Mesh(torch.eye(3), torch.tensor([[0, 1, 2]])),
    ]
    server = viser.ViserServer(host="127.0.0.1", port=free_port(), verbose=False)
    try:
        handles = viewer_app.draw_layers(server.scene, layers, "/layers")
        assert [type(h).__name__ for h in handles] == [
            "GaussianSplatHandle", "CameraFrustumHandle", "CameraFrustumHandle", "PointCloudHandle",
            "FrameHandle", "BoxHandle", "BoxHandle", "GlbHandle",
            "PointCloudHandle", "FrameHandle", "BoxHandle", "GlbHandle",
        ]
        # Frusta sit at the camera centres; boxes at their LiDAR pose, under the LiDAR frame.
        np.testing.assert_allclose(handles[1].position, cams.centers[0].numpy(), atol=1e-5)
        np.testing.assert_allclose(handles[4].position, [1.0, 2.0, 0.0])
        np.testing.assert_allclose(handles[5].position, [1.0, 0.0, 0.5])
        np.testing.assert_allclose(handles[5].wxyz, [math.sqrt(0.5), 0.0, 0.0, math.sqrt(0.5)], atol=1e-7)
        with pytest.raises(TypeError, match="not a scene layer"):
            viewer_app.draw_layers(server.scene, [torch.zeros(3)], "/bad")
    finally:
        server.stop()


def test_ply_viewer_shows_any_3dgs_file_and_renders_it_like_the_run(tmp_path):
    config = SyntheticObjectsConfig(objects=("box",), resolution=32, num_test_views=1)
    data = write_synthetic_objects(tmp_path / "objects", config)[0]
    run = tmp_path / "run"
    train_splat(data, run, steps=4)
    viewer = viewer_app.PlyViewer(run / "point_cloud.ply", port=free_port())
    try:
        assert viewer.refresh() and not viewer.refresh()  # a file is shown once
        (splats,) = viewer.shown_layers
        state = load_checkpoint(list_checkpoints(run)[-1][1])["method"]
        torch.testing.assert_close(splats.means, state["splats.means"])
        assert "point_cloud.ply" in viewer.status and "SH degree 3" in viewer.status
        # The render panel renders the file as the run's own method renders itself.
        _, method, _ = load_trained_method(run, torch.device("cpu"))
        camera = method.data.cameras[:1]
        with torch.no_grad():
            expected = method.get_outputs_for_camera(camera)
        got = viewer.file.get_outputs_for_camera(camera)
        for key in ("rgb", "alpha", "depth"):
            torch.testing.assert_close(got[key], expected[key], atol=1e-5, rtol=0)
    finally:
        viewer.stop()


def test_ply_without_3dgs_fields_is_refused_before_serving(tmp_path):
    points = tmp_path / "points.ply"
    write_points_ply(points, torch.rand(5, 3), torch.zeros(5, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"points.ply: vertex property 'f_dc_0' is missing"):
        viewer_app.PlyViewer(points, port=free_port())
