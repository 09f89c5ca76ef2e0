"""The web viewer serves a run on 127.0.0.1, follows new checkpoints, and draws every scene
layer type."""

import math
import urllib.request

import numpy as np
import pytest
import torch
from splat_runs import free_port, train_splat

from sparse3d.engine.checkpoint import list_checkpoints, load_checkpoint
from sparse3d.engine.run import load_trained_method
from sparse3d.engine.scene import Boxes3D, CameraFrusta, Mesh, PointCloud, Splats
from sparse3d.geometry.cameras import Cameras, intrinsics_from_fov, look_at_viewmats
from sparse3d.render.ply import write_points_ply
from sparse3d.synthetic.objects.generator import (
    SyntheticObjectsConfig,
    write_synthetic_objects,
)

viser = pytest.importorskip("viser")
viewer_app = pytest.importorskip("sparse3d.viewer.app")
colors = pytest.importorskip("sparse3d.viewer.colors")
viewer_layers = pytest.importorskip("sparse3d.viewer.layers")
view_picker = pytest.importorskip("sparse3d.viewer.view_picker")
LABEL_COLORS, DEFAULT_COLOR = colors.LABEL_COLORS, colors.DEFAULT_COLOR


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
        drawn = viewer_layers.draw_layers(server.scene, layers, "/layers")
        handles = [node for layer in drawn for node in layer.nodes]
        assert [type(h).__name__ for h in handles] == [
            "GaussianSplatHandle", "CameraFrustumHandle", "CameraFrustumHandle", "PointCloudHandle",
            "LineSegmentsHandle", "LabelHandle", "LabelHandle", "GlbHandle",
            "PointCloudHandle", "LineSegmentsHandle", "GlbHandle",
        ]
        # Frusta sit at the camera centres.
        np.testing.assert_allclose(handles[1].position, cams.centers[0].numpy(), atol=1e-5)
        # Box 0 (4 x 2 x 1.5, turned to +y) at (1, 0, 0.5) in a LiDAR frame at (1, 2, 0):
        # its heading marker runs from its centre (2, 2, 0.5) to its front face's (2, 4, 0.5).
        segments = handles[4].points.reshape(2, 13, 2, 3)
        np.testing.assert_allclose(segments[0, 12], [[2.0, 2.0, 0.5], [2.0, 4.0, 0.5]], atol=1e-6)
        lows, highs = segments[0, :12].reshape(-1, 3).min(0), segments[0, :12].reshape(-1, 3).max(0)
        np.testing.assert_allclose([lows, highs], [[1.0, 0.0, -0.25], [3.0, 4.0, 1.25]], atol=1e-6)
        edge_lengths = sorted(np.linalg.norm(segments[0, :12, 1] - segments[0, :12, 0], axis=1).round(6).tolist())
        assert edge_lengths == [1.5] * 4 + [2.0] * 4 + [4.0] * 4
        # Coloured by label; scores are labels over each box's top.
        assert (handles[4].colors[:13] == LABEL_COLORS[0]).all() and (handles[4].colors[13:] == LABEL_COLORS[3]).all()
        assert handles[5].text == "0.90" and handles[6].text == "0.40"
        np.testing.assert_allclose(handles[5].position, [2.0, 2.0, 1.25], atol=1e-6)
        assert (handles[9].colors == DEFAULT_COLOR).all()
        with pytest.raises(TypeError, match="not a scene layer"):
            viewer_layers.draw_layers(server.scene, [torch.zeros(3)], "/bad")
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


def test_data_viewer_shows_a_data_set_before_training(tmp_path):
    config = SyntheticObjectsConfig(objects=("box",), resolution=32, num_test_views=2)
    data = write_synthetic_objects(tmp_path / "objects", config)[0]
    viewer = viewer_app.DataViewer(data, port=free_port(), num_train_views=4)
    try:
        assert viewer.refresh() and not viewer.refresh()
        training, held_out, *points = viewer.shown_layers
        assert (training.name, len(training.cameras), held_out.name, len(held_out.cameras)) == (
            "training views", 4, "held-out views", 2)
        torch.testing.assert_close(training.images, viewer.data.data.images[viewer.data.data.train_indices])
        assert "4 training, 2 held out" in viewer.status and "32 x 32" in viewer.status
    finally:
        viewer.stop()
    with pytest.raises(ValueError, match="no multi-view data found"):
        viewer_app.DataViewer(tmp_path, port=free_port())


def test_a_picked_views_pose_sees_as_the_view_sees():
    eyes = torch.tensor([[0.0, -4.0, 1.0], [3.0, 2.0, -1.0]])
    K = intrinsics_from_fov(50.0, 16, 12)
    cams = Cameras(look_at_viewmats(eyes, torch.zeros(2, 3)), K.expand(2, 3, 3), 16, 12)
    position, look_at, up, fov_y = view_picker.view_pose(CameraFrusta(cams), 1)
    np.testing.assert_allclose(position, eyes[1].numpy(), atol=1e-6)
    # The look-at point is straight ahead (the image centre), the up direction points to the image's top.
    centre = cams.viewmats[1].double() @ torch.tensor([*look_at, 1.0], dtype=torch.float64)
    np.testing.assert_allclose((K.double() @ centre[:3] / centre[2])[:2].numpy(), [8.0, 6.0], atol=1e-6)
    assert np.linalg.norm(look_at - position) == pytest.approx(view_picker.LOOK_DISTANCE)
    above = cams.viewmats[1].double() @ torch.tensor([*(look_at + 0.1 * up), 1.0], dtype=torch.float64)
    assert (K.double() @ above[:3] / above[2])[1] < 6.0
    assert fov_y == pytest.approx(2 * math.atan(6 / float(K[1, 1])))


def test_run_viewer_shows_training_progress_and_curves(tmp_path):
    data = write_synthetic_objects(tmp_path / "objects", SyntheticObjectsConfig(objects=("box",), resolution=32, num_test_views=1))[0]
    run = tmp_path / "run"
    train_splat(data, run, steps=4)
    viewer = viewer_app.RunViewer(run, port=free_port())
    try:
        viewer.refresh()
        assert viewer.training.progress.content.startswith("training: step 4 / 4 (100 %)")
        assert "training losses" in viewer.training.plots and any(t.startswith("eval: ") for t in viewer.training.plots)
        assert viewer.training.button is None  # another process trains: nothing to pause
    finally:
        viewer.stop()


def test_layer_checkboxes_show_and_hide_layers_and_keep_the_choice():
    toggles_module = pytest.importorskip("sparse3d.viewer.layer_toggles")
    server = viser.ViserServer(host="127.0.0.1", port=free_port(), verbose=False)
    try:
        toggles = toggles_module.LayerToggles(server)
        layers = [PointCloud(torch.rand(4, 3), name="shown"), PointCloud(torch.rand(4, 3), name="extra", visible=False)]
        drawn = viewer_layers.draw_layers(server.scene, layers, "/layers")
        toggles.show(drawn)
        assert [box.label for box in toggles.boxes] == ["shown", "extra"]
        assert [box.value for box in toggles.boxes] == [True, False] == [d.frame.visible for d in drawn]
        toggles.boxes[1].value = True  # as a click in the page does
        assert drawn[1].frame.visible
        toggles.boxes[0].value = False
        assert not drawn[0].frame.visible
        # Drawn again (a new checkpoint): the choices stay.
        drawn = viewer_layers.draw_layers(server.scene, layers, "/layers")
        toggles.show(drawn)
        assert [box.value for box in toggles.boxes] == [False, True] == [d.frame.visible for d in drawn]
    finally:
        server.stop()


def test_compare_viewer_joins_two_runs_renders_and_follows_both(tmp_path):
    comparison = pytest.importorskip("sparse3d.viewer.comparison")
    data = write_synthetic_objects(tmp_path / "objects", SyntheticObjectsConfig(objects=("box",), resolution=32, num_test_views=1))[0]
    train_splat(data, tmp_path / "a", steps=4)
    train_splat(data, tmp_path / "b", steps=2)
    viewer = viewer_app.CompareViewer(tmp_path / "a", tmp_path / "b", port=free_port())
    try:
        assert viewer.refresh() and "step 4" in viewer.status and "on the right" in viewer.status
        assert isinstance(viewer.panel.scene, comparison.Comparison) and viewer.panel.channel == "rgb"
        _, a, _ = load_trained_method(tmp_path / "a", torch.device("cpu"))
        _, b, _ = load_trained_method(tmp_path / "b", torch.device("cpu"))
        camera = a.data.cameras[:1]
        with torch.no_grad():
            joined, left, right = viewer.panel.scene.get_outputs_for_camera(camera), a.get_outputs_for_camera(camera), \
                b.get_outputs_for_camera(camera)
        assert set(joined) == {"rgb", "alpha", "depth"}
        torch.testing.assert_close(joined["rgb"][:, :15], left["rgb"][:, :15])  # 32 wide: the line is columns 15-16
        torch.testing.assert_close(joined["rgb"][:, 17:], right["rgb"][:, 17:])
        assert (joined["rgb"][:, 15:17] == 0).all() and joined["depth"][:, 15:17].isnan().all()
        assert not torch.equal(left["rgb"][:, 17:], right["rgb"][:, 17:])  # two different runs
        # The other run trains on: the viewer shows its new step.
        train_splat(data, tmp_path / "b", steps=4)
        assert viewer.refresh() and "step 4 on the right" in viewer.status
    finally:
        viewer.stop()
    with pytest.raises(FileNotFoundError, match="compare=.*no such run directory"):
        viewer_app.CompareViewer(tmp_path / "a", tmp_path / "nowhere", port=free_port())
