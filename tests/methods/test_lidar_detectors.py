"""The centerpoint and dsvt methods end to end on a tiny synthetic world: they learn and
score, resume exactly after an interruption, run from the command line; centerpoint starts
from an OpenPCDet checkpoint; dsvt's presets."""

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from clirun import run_cli
from tiny_detectors import NO_AUGMENTATION, TRAINING, tiny_config

from sparse3d.core.precision import bf16_dot_products
from sparse3d.detection.detectors.openpcdet import save_openpcdet_checkpoint
from sparse3d.engine.distributed import World
from sparse3d.engine.method import TrainingCallback
from sparse3d.engine.registry import discover_methods
from sparse3d.engine.scene import Boxes3D, PointCloud
from sparse3d.engine.trainer import Trainer, TrainingInterrupted

METHODS = ("centerpoint", "dsvt")
FIT_STEPS = {"centerpoint": 150, "dsvt": 120}
"""Steps of the short run that must fit its own training split."""


@pytest.mark.parametrize("method", METHODS)
def test_loss_falls_and_the_trained_split_is_detected(method, lidar_world, tmp_path):
    config = tiny_config(method, lidar_world, tmp_path / "run", FIT_STEPS[method],
                         data={"val_split": "synth_train", **NO_AUGMENTATION}, training={**TRAINING, "optim": {"lr": 1e-2}})
    config.trainer.log_every = 10
    trainer = Trainer(config, method, config.output, World())
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
    trainer.method.config.precision = "bf16"  # the same weights, predicting under CPU autocast
    low = trainer.method.evaluate(tmp_path / "bf16")
    assert abs(low["mean_ap"] - final["mAP"]) < 0.05 and abs(low["nd_score"] - final["NDS"]) < 0.05
    assert low["nd_score"] != final["NDS"] or not bf16_dot_products()  # bf16 did run


@pytest.mark.parametrize("method", METHODS)
def test_interrupted_run_resumes_exactly(method, lidar_world, tmp_path):
    def train(out: Path, stop_at: int | None):
        config = tiny_config(method, lidar_world, out, 6)
        config.trainer.ckpt_every = 2
        trainer = Trainer(config, method, out, World())
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


CLI_OVERRIDES = {
    "centerpoint": ["model.voxel_size=[0.4,0.4,0.25]", "model.encoder_channels=[4,4,8,8]", "model.bev.num_filters=[8,8]",
                    "model.bev.num_upsample_filters=[8,8]"],
    "dsvt": ["datamanager.point_cloud_range=[-25.6,-25.6,-5,25.6,25.6,3]", "model.voxel_size=[0.8,0.8,8]",
             "model.vfe_filters=[8,8]", "model.num_heads=1", "model.ffn_channels=8", "model.window=[8,8,1]",
             "model.window_shift=[4,4,0]", "model.num_blocks=1", "model.bev.num_filters=[8,8,8]",
             "model.bev.num_upsample_filters=[8,8,8]"],
}
"""A network small enough for a 2-step run from the command line."""
BAD_RUN = {
    "centerpoint": (["data={nothing}"], "no table folder 'v1.0-synth'"),
    "dsvt": (["data={world}", "model.voxel_size=[0.3,0.3,8]"], "multiple of"),  # 341.33 pillars over 102.4 m
}
"""Arguments that make a run fail, and what its one-line error says."""


@pytest.mark.parametrize("method", METHODS)
def test_command_line_train_eval_and_errors(method, lidar_world, tmp_path):
    out = tmp_path / "run"
    overrides = ["datamanager.num_sweeps=2", "model.head.shared_channels=4", *CLI_OVERRIDES[method]]
    env = dict(os.environ)
    result = run_cli("sparse3d-train", f"method={method}", "preset=cpu", f"data={lidar_world}", f"output={out}",
                     "trainer.max_steps=2", "trainer.progress=false", *overrides, env=env)
    assert result.returncode == 0, result.stderr
    assert "eval/results.json" in result.stdout and "openpcdet_checkpoint.pth" in result.stdout
    result = run_cli("sparse3d-eval", f"run={out}", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "eval.json").read_text())
    assert {"mAP", "NDS", "label_aps", "tp_errors"} <= report.keys()
    arguments, message = BAD_RUN[method]
    arguments = [a.format(nothing=tmp_path / "nothing", world=lidar_world) for a in arguments]
    result = run_cli("sparse3d-train", f"method={method}", "preset=cpu", f"output={tmp_path / 'x'}",
                     "trainer.progress=false", *arguments, env=env)
    assert result.returncode != 0 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_centerpoint_init_loads_an_openpcdet_checkpoint_at_the_first_step(lidar_world, tmp_path):
    source = Trainer(tiny_config("centerpoint", lidar_world, tmp_path / "a", 1), "centerpoint", tmp_path / "a",
                     World()).method.model
    torch.nn.init.constant_(source.dense_head.heads_list[0].hm[-1].bias, 1.5)
    path = save_openpcdet_checkpoint(source, tmp_path / "pcdet.pth")
    config = tiny_config("centerpoint", lidar_world, tmp_path / "b", 1, init=str(path))
    trainer = Trainer(config, "centerpoint", config.output, World())
    trainer.callbacks[0].fn(0, trainer.optimizers, None)  # what step 0 does first
    for (name, a), b in zip(source.state_dict().items(), trainer.method.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_dsvt_presets_are_the_reference_and_a_cpu_sized_network():
    spec = discover_methods()["dsvt"]
    full, cpu = spec.default_config(), spec.default_config("cpu")
    assert full.model.voxel_size == (0.3, 0.3, 8.0) and full.model.set_size == 90 and full.model.window == (30, 30, 1)
    assert full.model.bev.upsample_strides == (0.5, 1, 2) and full.model.bev.stride == 2
    optim = full.training.optim
    assert (optim.lr, optim.weight_decay, optim.grad_norm_clip) == (0.005, 0.05, 35.0)
    assert full.datamanager.gt_sampling_stop_epoch is not None  # DSVT's fade strategy
    assert cpu.model.bev.stride == 2 and cpu.datamanager.version == "v1.0-synth"
    assert cpu.model.voxel_size[0] * cpu.model.bev.stride == 0.8  # the head's cells, as centerpoint's cpu preset
