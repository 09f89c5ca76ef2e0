"""The splat method end to end on a tiny synthetic object: it learns, evaluates, resumes."""

import json
import os
from pathlib import Path

import pytest
import torch

from clirun import run_cli
from sparse3d.synthetic.objects.generator import SyntheticObjectsConfig, write_synthetic_objects
from sparse3d.engine.distributed import World
from sparse3d.engine.registry import discover_methods
from sparse3d.engine.trainer import Trainer


@pytest.fixture(scope="module")
def tiny_object(tmp_path_factory) -> Path:
    config = SyntheticObjectsConfig(objects=("sphere",), resolution=32, num_test_views=3)
    return write_synthetic_objects(tmp_path_factory.mktemp("objects"), config)[0]


def splat_config(data: Path, out: Path, steps: int):
    config = discover_methods()["splat"].default_config()
    config.data, config.output = data, out
    config.trainer.max_steps = steps
    config.trainer.progress = False
    config.model.num_random = 400
    return config


def test_loss_falls_and_eval_report_has_every_view(tiny_object, tmp_path):
    config = splat_config(tiny_object, tmp_path / "run", steps=60)
    config.trainer.log_every = 10
    final = Trainer(config, "splat", config.output, World()).train()
    train = json.loads((config.output / "metrics.json").read_text())["train"]
    assert train[-1]["l1"] < 0.7 * train[0]["l1"]
    assert {"psnr", "ssim", "masked_psnr", "masked_ssim"} <= final.keys()
    assert (config.output / "point_cloud.ply").exists()


def test_cli_train_then_eval_writes_eval_json(tiny_object, tmp_path):
    env = dict(os.environ)
    out = tmp_path / "run"
    trained = run_cli("sparse3d-train", "method=splat", f"data={tiny_object}", f"output={out}",
                      "trainer.max_steps=2", "trainer.progress=false", "model.num_random=300", env=env)
    assert trained.returncode == 0, trained.stderr
    evaluated = run_cli("sparse3d-eval", f"run={out}", env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((out / "eval.json").read_text())
    assert {"psnr", "ssim", "masked_psnr", "masked_ssim", "lpips", "views"} <= report.keys()
    assert len(report["views"]) == 3 and report["lpips"] is None  # no LPIPS weights on this machine
    assert report["psnr"] == pytest.approx(sum(v["psnr"] for v in report["views"]) / 3)


def test_missing_data_is_a_clear_error(tmp_path):
    result = run_cli("sparse3d-train", "method=splat", f"data={tmp_path / 'nowhere'}", f"output={tmp_path / 'run'}",
                     env=dict(os.environ))
    assert result.returncode != 0
    assert "nowhere" in result.stderr


def test_resume_across_densification_matches_uninterrupted_run(tiny_object, tmp_path):
    def run(out: Path, steps: int):
        config = splat_config(tiny_object, out, steps)
        config.trainer.ckpt_every = 5
        config.trainer.eval_every = 0
        strategy = config.model.strategy
        strategy.refine_start_iter, strategy.refine_every, strategy.grow_grad2d = 1, 3, 0.0  # grow everything
        trainer = Trainer(config, "splat", out, World())
        trainer.train()
        return trainer.method.splats

    uninterrupted = run(tmp_path / "a", 8)
    run(tmp_path / "b", 5)  # stops after a refinement, with statistics pending
    resumed = run(tmp_path / "b", 8)
    assert len(uninterrupted["means"]) > 2 * 400  # refinement really happened twice
    for name, value in uninterrupted.items():
        assert torch.equal(value, resumed[name]), name
