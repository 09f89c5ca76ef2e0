"""The web viewer serves a run on 127.0.0.1 and follows new checkpoints."""

import socket
import urllib.request

import pytest

from sparse3d.synthetic.objects.generator import SyntheticObjectsConfig, write_synthetic_objects
from sparse3d.engine.checkpoint import list_checkpoints, load_checkpoint
from sparse3d.engine.distributed import World
from sparse3d.engine.registry import discover_methods
from sparse3d.engine.trainer import Trainer

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
        assert viewer.shown_content.splat_centers.shape == (n, 3)
        assert viewer.shown_content.camera_images.shape[0] == 9  # the training views
        page = urllib.request.urlopen(f"http://127.0.0.1:{viewer.port}/", timeout=10).read().decode()
        assert "<title>Viser</title>" in page

        train_splat(data, run, steps=4)  # training goes on: the viewer follows
        assert viewer.refresh() and viewer.shown_step == 4
    finally:
        viewer.server.stop()


def test_default_host_is_loopback_and_empty_run_is_not_an_error(tmp_path):
    viewer = viewer_app.RunViewer(tmp_path, port=free_port())
    try:
        assert viewer.server.get_host() == "127.0.0.1"
        assert not viewer.refresh()  # no checkpoint yet: nothing to show
    finally:
        viewer.server.stop()
