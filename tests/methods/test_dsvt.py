"""The dsvt method end to end on a small synthetic world: it learns and scores, resumes
exactly after an interruption, and runs from the command line."""

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from clirun import run_cli

from sparse3d.engine.config import update_config
from sparse3d.engine.distributed import World
from sparse3d.engine.method import TrainingCallback
from sparse3d.engine.registry import discover_methods
from sparse3d.engine.scene import Boxes3D, PointCloud
from sparse3d.engine.trainer import Trainer, TrainingInterrupted
from sparse3d.synthetic.lidar import SpinningLidarConfig
from sparse3d.synthetic.nuscenes import NuScenesSynthConfig, write_synthetic_nuscenes

CLASSES = ("car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle", "bicycle", "pedestrian",
           "traffic_cone")
TINY = {
    # the tiny world's objects are seen by few points
    "datamanager": {"num_sweeps": 2, "point_cloud_range": [-25.6, -25.6, -5.0, 25.6, 25.6, 3.0],
                    "gt_sampling": {"min_points": [f"{n}:1" for n in CLASSES]}},
    "training": {"batch_size": 2, "eval_batch_size": 3, "optim": {"lr": 3e-3}},
    # over the cpu preset: 128 x 128 pillars of 0.4 m, width 16, sets of 32 in 16 x 16 windows
    "model": {"vfe_filters": [16, 16], "num_heads": 2, "ffn_channels": 32, "window": [16, 16, 1],
              "window_shift": [8, 8, 0], "set_size": 32,
              "bev": {"num_filters": [16, 16, 16], "num_upsample_filters": [16, 16, 16]},
              "head": {"shared_channels": 8}},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    lidar = SpinningLidarConfig(num_beams=16, azimuth_steps=540, max_range=40.0)
    config = NuScenesSynthConfig(seed=3, num_scenes=2, samples_per_scene=3, sweeps_per_sample=1, objects_per_scene=16, lidar=lidar)
    return write_synthetic_nuscenes(tmp_path_factory.mktemp("world"), config)


def dsvt_config(world: Path, out: Path, steps: int, **changes):
    config = discover_methods()["dsvt"].default_config("cpu")
    config = update_config(config, {**TINY, **changes}, "test")
    config.data, config.output = world, out
    config.trainer.max_steps, config.trainer.eval_every, config.trainer.progress = steps, 0, False
    return config


def test_presets_are_the_reference_and_a_cpu_sized_network():
    spec = discover_methods()["dsvt"]
    full, cpu = spec.default_config(), spec.default_config("cpu")
    assert full.model.voxel_size == (0.3, 0.3, 8.0) and full.model.set_size == 90 and full.model.window == (30, 30, 1)
    assert full.model.bev.upsample_strides == (0.5, 1, 2) and full.model.bev.stride == 2
    optim = full.training.optim
    assert (optim.lr, optim.weight_decay, optim.grad_norm_clip) == (0.005, 0.05, 35.0)
    assert full.datamanager.gt_sampling_stop_epoch is not None  # DSVT's fade strategy
    assert cpu.model.bev.stride == 2 and cpu.datamanager.version == "v1.0-synth"
    assert cpu.model.voxel_size[0] * cpu.model.bev.stride == 0.8  # the head's cells, as centerpoint's cpu preset


def test_loss_falls_and_the_trained_split_is_detected(world, tmp_path):
    # evaluated on its own training split, without augmentation: a short run must fit what it saw
    plain = {"val_split": "synth_train", "cbgs": False, "gt_sampling": {"enabled": False},
             "augment": {"flip_axes": [], "rotation_range": [0.0, 0.0], "scale_range": [1.0, 1.0], "translation_std": [0.0, 0.0, 0.0]}}
    config = dsvt_config(world, tmp_path / "run", 120, datamanager={**TINY["datamanager"], **plain},
                         training={**TINY["training"], "optim": {"lr": 1e-2}})
    config.trainer.log_every = 10
    trainer = Trainer(config, "dsvt", config.output, World())
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
        config = dsvt_config(world, out, 6)
        config.trainer.ckpt_every = 2
        trainer = Trainer(config, "dsvt", out, World())
        if stop_at is not None:
            def interrupt(step, optimizers, produced):
                if step == stop_at:
                    os.kill(os.getpid(), signal.SIGTERM)
            trainer.callbacks.append(TrainingCallback("after_step", interrupt))
        trainer.train()
        return trainer.method.model.state_dict()

    uninterrupted = train(tmp_path / "a", None)
    with pytest.raises(TrainingInterrupted):
        train(tmp_path / "b", 3)  # between checkpoints: step 3 is redone from the one of step 2
    resumed = train(tmp_path / "b", None)
    for name, value in uninterrupted.items():
        assert torch.equal(value, resumed[name]), name


def test_command_line_train_eval_and_errors(world, tmp_path):
    out = tmp_path / "run"
    overrides = ["datamanager.num_sweeps=2", "datamanager.point_cloud_range=[-25.6,-25.6,-5,25.6,25.6,3]",
                 "model.voxel_size=[0.8,0.8,8]", "model.vfe_filters=[8,8]", "model.num_heads=1", "model.ffn_channels=8",
                 "model.window=[8,8,1]", "model.window_shift=[4,4,0]", "model.num_blocks=1",
                 "model.bev.num_filters=[8,8,8]", "model.bev.num_upsample_filters=[8,8,8]", "model.head.shared_channels=4"]
    env = dict(os.environ)
    result = run_cli("sparse3d-train", "method=dsvt", "preset=cpu", f"data={world}", f"output={out}",
                     "trainer.max_steps=2", "trainer.progress=false", *overrides, env=env)
    assert result.returncode == 0, result.stderr
    assert "eval/results.json" in result.stdout and "openpcdet_checkpoint.pth" in result.stdout
    result = run_cli("sparse3d-eval", f"run={out}", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "eval.json").read_text())
    assert {"mAP", "NDS", "label_aps", "tp_errors"} <= report.keys()
    result = run_cli("sparse3d-train", "method=dsvt", "preset=cpu", f"data={world}", f"output={tmp_path / 'x'}",
                     "model.voxel_size=[0.3,0.3,8]", "trainer.progress=false", env=env)
    assert result.returncode != 0 and "multiple of" in result.stderr  # 341.33 pillars over 102.4 m
    assert "Traceback" not in result.stderr
