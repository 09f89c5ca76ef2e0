"""gaussianobject end to end on a tiny synthetic object: every stage's artefacts, resume
after SIGKILL inside a stage, rerun from a stage, and bad inputs."""

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from clirun import VENV_BIN, plugin_environment, run_cli
from PIL import Image

from sparse3d.engine.checkpoint import list_checkpoints, load_checkpoint
from sparse3d.render.metrics import psnr

# A schedule small enough for seconds, that still reaches every branch: densification and
# floater elimination in coarse and leave-one-out runs, the fork, repair training, refreshes
# of the repaired novel views, and the reference-only tail of refinement.
TINY = [
    "trainer.progress=false", "trainer.max_steps=24", "trainer.ckpt_every=8", "trainer.eval_every=24",
    "coarse.steps=30", "coarse.strategy.refine_start_iter=5", "coarse.strategy.refine_every=5",
    "coarse.strategy.refine_stop_iter=20", "coarse.strategy.reset_every=1000", "model.floaters_every=10",
    "loo.steps=20", "loo.strategy.refine_start_iter=5", "loo.strategy.refine_every=5",
    "loo.strategy.refine_stop_iter=12", "loo.strategy.reset_every=1000",
    "model.sh_degree_interval=10", "hull.resolution=16", "hull.coarse_resolution=8",
    "repair.steps=6", "repair.batch_size=2", "repair.crop=16", "repair.embedded.channels=[8,8]",
    "refine.around_gt_steps=16", "refine.refresh_every=6", "refine.refresh_size=3",
    "refine.strategy.refine_start_iter=4", "refine.strategy.refine_every=4", "refine.strategy.refine_stop_iter=12",
]


@pytest.fixture(scope="module")
def tiny_object(tmp_path_factory) -> Path:
    from sparse3d.synthetic.objects.generator import (
        SyntheticObjectsConfig,
        write_synthetic_objects,
    )

    config = SyntheticObjectsConfig(objects=("capsule",), resolution=32, num_test_views=4, supersampling=1)
    return write_synthetic_objects(tmp_path_factory.mktemp("objects"), config)[0]


def train(data: Path, out: Path, *extra: str):
    return run_cli("sparse3d-train", "method=gaussianobject", f"data={data}", f"output={out}", *TINY, *extra,
                   env=plugin_environment())


@pytest.fixture(scope="module")
def finished_run(tiny_object, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("go") / "run"
    result = train(tiny_object, out)
    assert result.returncode == 0, result.stderr
    (out.parent / "train.stdout").write_text(result.stdout)
    return out


def final_state(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(list_checkpoints(run)[-1][1])["method"]


def assert_same_gaussians(a: Path, b: Path) -> None:
    sa, sb = final_state(a), final_state(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        if isinstance(sa[key], torch.Tensor):
            assert torch.equal(sa[key], sb[key]), key


def test_every_stage_leaves_its_artefacts_and_eval_follows_the_protocol(finished_run, tiny_object):
    run = finished_run
    for path in ["hull.ply", "coarse/point_cloud.ply", "loo/noise.pt", "loo/renders.pt", "point_cloud.ply"]:
        assert (run / path).is_file(), path
    assert list_checkpoints(run / "repair_model") and list_checkpoints(run / "loo" / "view_3_unseen")
    renders = torch.load(run / "loo" / "renders.pt", weights_only=True)
    assert renders["images"].shape == (8, 32, 32, 3) and renders["views"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    evaluated = run_cli("sparse3d-eval", f"run={run}", env=plugin_environment())
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((run / "eval.json").read_text())
    assert report["method"] == "gaussianobject" and len(report["views"]) == 4
    assert {"psnr", "ssim", "psnr_inside_mask"} <= report.keys()
    # renders/ holds each held-out view's render: its PSNR is the report's, up to 8-bit rounding.
    for view in report["views"]:
        name = Path(view["name"]).stem
        render = torch.from_numpy(np.array(Image.open(run / "renders" / f"{name}.png"))).float() / 255
        truth = torch.from_numpy(np.array(Image.open(tiny_object / "images" / f"{name}.png"))).float() / 255
        mask = torch.from_numpy(np.array(Image.open(tiny_object / "masks" / f"{name}.png")) > 127)[..., None]
        target = torch.where(mask, truth[..., :3], torch.ones(()))
        assert abs(float(psnr(render, target)) - view["psnr"]) < 0.1, name
    assert Image.open(run / "orbit.png").size[0] % 32 == 0
    summary = (run.parent / "train.stdout").read_text()
    for stage in ("hull:", "coarse:", "loo:", "repair_model:", "refine:", "outputs: point_cloud.ply, renders/, orbit.png"):
        assert f"sparse3d: {stage}" in summary, stage


def test_sigkill_inside_a_stage_resumes_to_the_same_gaussians(tiny_object, finished_run, tmp_path):
    out = tmp_path / "killed"
    command = [str(VENV_BIN / "sparse3d-train"), "method=gaussianobject", f"data={tiny_object}", f"output={out}", *TINY]
    process = subprocess.Popen(command, env=plugin_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list_checkpoints(out / "loo" / "view_1_seen"):  # inside the leave-one-out stage
        assert process.poll() is None and time.monotonic() < deadline, "run ended before it could be killed"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert not (out / "loo" / "noise.pt").exists()
    resumed = train(tiny_object, out)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_gaussians(out, finished_run)


def test_rerun_from_a_stage_repeats_it(tiny_object, finished_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(finished_run, out)
    before = (out / "loo" / "noise.pt").stat().st_mtime_ns
    result = train(tiny_object, out, "stage=repair_model")
    assert result.returncode == 0, result.stderr
    assert (out / "loo" / "noise.pt").stat().st_mtime_ns == before  # earlier stages kept
    assert not (out / "stages.json").exists()  # the restart finished
    assert_same_gaussians(out, finished_run)


def test_bad_inputs_are_clear_errors(tiny_object, tmp_path):
    no_masks = tmp_path / "no_masks"
    shutil.copytree(tiny_object, no_masks)
    shutil.rmtree(no_masks / "masks")
    for frame in ("transforms.json",):
        data = json.loads((no_masks / frame).read_text())
        for entry in data["frames"]:
            entry.pop("mask_path", None)
        (no_masks / frame).write_text(json.dumps(data))
    result = train(no_masks, tmp_path / "a")
    assert result.returncode != 0 and "mask" in result.stderr and "Traceback" not in result.stderr

    two = train(tiny_object, tmp_path / "b", "datamanager.num_train_views=2")
    assert two.returncode != 0 and "at least 3 input views" in two.stderr

    missing = tmp_path / "no_such_sd"
    sd = train(tiny_object, tmp_path / "c", "repair.kind=diffusion", f"repair.pretrained={missing}")
    assert sd.returncode != 0 and str(missing) in sd.stderr and "Traceback" not in sd.stderr
    assert not (tmp_path / "c" / "hull.ply").exists()  # refused before the first stage


def test_scene_layers_show_every_stage(finished_run):
    from sparse3d.engine.run import load_trained_method
    from sparse3d.reconstruction.floaters import LAMBDA_END, floater_mask
    from sparse3d.render.ply import read_gaussians_ply, read_points_ply

    _, method, _ = load_trained_method(finished_run, torch.device("cpu"))
    layers = method.get_scene_layers()
    assert [(layer.name, layer.visible) for layer in layers] == [
        ("Gaussians", True), ("training views", True), ("visual hull", False), ("coarse Gaussians", False),
        ("floaters", False), ("repaired views", False)]
    gaussians, _, hull, coarse, floaters, repaired = layers
    points, colors = read_points_ply(finished_run / "hull.ply")
    assert torch.equal(hull.points, points) and torch.equal(hull.colors, colors)
    assert torch.equal(coarse.means, read_gaussians_ply(finished_run / "coarse" / "point_cloud.ply")["means"])
    assert torch.equal(floaters.points, gaussians.means[floater_mask(gaussians.means, LAMBDA_END)])
    assert len(repaired.cameras) == 3  # refine.refresh_size
    torch.testing.assert_close(repaired.images.float() / 255, method.novel["images"].clamp(0, 1), atol=0.5 / 255, rtol=0)
