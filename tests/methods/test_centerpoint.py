"""The centerpoint method end to end on a small synthetic world: it learns and scores,
resumes exactly, starts from an OpenPCDet checkpoint, and runs from the command line."""

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from clirun import run_cli

from sparse3d.detection.detectors.openpcdet import save_openpcdet_checkpoint
from sparse3d.engine.config import update_config
from sparse3d.engine.distributed import World
from sparse3d.engine.method import TrainingCallback
from sparse3d.engine.registry import discover_methods
from sparse3d.engine.scene import Boxes3D, PointCloud
from sparse3d.engine.trainer import Trainer, TrainingInterrupted
from sparse3d.synthetic.lidar import SpinningLidarConfig
from sparse3d.synthetic.nuscenes import NuScenesSynthConfig, write_synthetic_nuscenes

TINY = {
    "datamanager": {"num_sweeps": 2, "point_cloud_range": [-25.6, -25.6, -5.0, 25.6, 25.6, 3.0],
                    # the tiny world's objects are seen by few points
                    "gt_sampling": {"min_points": [f"{n}:1" for n in ("car", "truck", "construction_vehicle", "bus",
                                                                          "trailer", "barrier", "motorcycle", "bicycle",
                                                                          "pedestrian", "traffic_cone")]}},
    "training": {"batch_size": 2, "eval_batch_size": 3, "optim": {"lr": 3e-3}},
    "model": {"voxel_size": [0.2, 0.2, 0.25], "encoder_channels": [4, 8, 8, 16],
              "bev": {"layer_nums": [1, 1], "num_filters": [16, 16], "num_upsample_filters": [16, 16]},
              "head": {"shared_channels": 8}},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    lidar = SpinningLidarConfig(num_beams=16, azimuth_steps=540, max_range=40.0)
    config = NuScenesSynthConfig(seed=3, num_scenes=2, samples_per_scene=3, sweeps_per_sample=1, objects_per_scene=16, lidar=lidar)
    return write_synthetic_nuscenes(tmp_path_factory.mktemp("world"), config)


def centerpoint_config(world: Path, out: Path, steps: int, **changes):
    config = discover_methods()["centerpoint"].default_config("cpu")
    config = update_config(config, {**TINY, **changes}, "test")
    config.data, config.output = world, out
    config.trainer.max_steps, config.trainer.eval_every, config.trainer.progress = steps, 0, False
    return config


def test_loss_falls_and_the_trained_split_is_detected(world, tmp_path):
    # evaluated on its own training split, without augmentation: a short run must fit what it saw
    plain = {"val_split": "synth_train", "cbgs": False, "gt_sampling": {"enabled": False},
             "augment": {"flip_axes": [], "rotation_range": [0.0, 0.0], "scale_range": [1.0, 1.0], "translation_std": [0.0, 0.0, 0.0]}}
    config = centerpoint_config(world, tmp_path / "run", 150, datamanager={**TINY["datamanager"], **plain},
                                training={**TINY["training"], "optim": {"lr": 1e-2}})
    config.trainer.log_every = 10
    trainer = Trainer(config, "centerpoint", config.output, World())
    final = trainer.train()
    losses = [entry["loss"] for entry in trainer.history["train"]]
    assert sum(losses[-3:]) < 0.3 * sum(losses[:3])
    assert final["mAP"] > 0 and final["NDS"] > 0
    summary = json.loads((config.output / "eval" / "metrics_summary.json").read_text())
    assert summary["nd_score"] == final["NDS"]
    submission = json.loads((config.output / "eval" / "results.json").read_text())
    assert len(submission["results"]) == 3  # every sample of the split, empty lists included
    assert (config.output / "openpcdet_checkpoint.pth").exists()
    layers = trainer.method.get_scene_layers()
    assert [type(layer) for layer in layers] == [PointCloud, Boxes3D, Boxes3D]


def test_interrupted_run_resumes_exactly(world, tmp_path):
    def train(out: Path, stop_at: int | None):
        config = centerpoint_config(world, out, 6)
        config.trainer.ckpt_every = 2
        trainer = Trainer(config, "centerpoint", out, World())
        if stop_at is not None:
            def interrupt(step, optimizers, produced):
                if step == stop_at:
                    os.kill(os.getpid(), signal.SIGTERM)
            trainer.callbacks.append(TrainingCallback("after_step", interrupt))
        trainer.train()
        return trainer.method.model.state_dict()

    uninterrupted = train(tmp_path / "a", None)
    with pytest.raises(TrainingInterrupted):
        train(tmp_path / "b", 2)
    resumed = train(tmp_path / "b", None)
    for name, value in uninterrupted.items():
        assert torch.equal(value, resumed[name]), name


def test_init_loads_an_openpcdet_checkpoint_at_the_first_step(world, tmp_path):
    source = Trainer(centerpoint_config(world, tmp_path / "a", 1), "centerpoint", tmp_path / "a", World()).method.model
    torch.nn.init.constant_(source.dense_head.heads_list[0].hm[-1].bias, 1.5)
    path = save_openpcdet_checkpoint(source, tmp_path / "pcdet.pth")
    config = centerpoint_config(world, tmp_path / "b", 1, init=str(path))
    trainer = Trainer(config, "centerpoint", config.output, World())
    trainer.callbacks[0].fn(0, trainer.optimizers, None)  # what step 0 does first
    for (name, a), b in zip(source.state_dict().items(), trainer.method.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_command_line_train_eval_and_errors(world, tmp_path):
    out = tmp_path / "run"
    overrides = ["datamanager.num_sweeps=2", "model.voxel_size=[0.4,0.4,0.25]", "model.encoder_channels=[4,4,8,8]",
                 "model.bev.num_filters=[8,8]", "model.bev.num_upsample_filters=[8,8]", "model.head.shared_channels=4"]
    env = dict(os.environ)
    result = run_cli("sparse3d-train", "method=centerpoint", "preset=cpu", f"data={world}", f"output={out}",
                     "trainer.max_steps=2", "trainer.progress=false", *overrides, env=env)
    assert result.returncode == 0, result.stderr
    assert "eval/results.json" in result.stdout and "openpcdet_checkpoint.pth" in result.stdout
    result = run_cli("sparse3d-eval", f"run={out}", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "eval.json").read_text())
    assert {"mAP", "NDS", "label_aps", "tp_errors"} <= report.keys()
    result = run_cli("sparse3d-train", "method=centerpoint", "preset=cpu", f"data={tmp_path / 'nothing'}",
                     f"output={tmp_path / 'x'}", "trainer.progress=false", env=env)
    assert result.returncode != 0 and "no table folder 'v1.0-synth'" in result.stderr
    assert "Traceback" not in result.stderr
