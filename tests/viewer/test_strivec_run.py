"""sparse3d-view run= shows a strivec run: its local tensors' boxes per level (only level 0
at first) and the training views, and renders it from any camera on the server."""

import torch
from radiance_runs import field_run_config
from sparse3d.viewer.app import RunViewer
from splat_runs import free_port

from sparse3d.engine.distributed import World
from sparse3d.engine.scene import Boxes3D, CameraFrusta
from sparse3d.engine.trainer import Trainer


def test_run_viewer_draws_the_tensor_boxes_and_renders_the_field(dense_object, tmp_path):
    config = field_run_config("strivec", dense_object, tmp_path / "run", steps=4)
    Trainer(config, "strivec", config.output, World()).train()
    viewer = RunViewer(config.output, port=free_port())
    try:
        assert viewer.refresh()
        boxes = [layer for layer in viewer.shown_layers if isinstance(layer, Boxes3D)]
        assert [b.visible for b in boxes] == [True, False, False]
        assert any(isinstance(layer, CameraFrusta) for layer in viewer.shown_layers)
        method = viewer._loaded[2]
        out = method.get_outputs_for_camera(method.data.cameras[0])
        assert out["rgb"].shape == (32, 32, 3) and torch.isfinite(out["depth"]).all()
    finally:
        viewer.stop()
