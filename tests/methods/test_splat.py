"""The splat method end to end on a tiny synthetic object: it learns, evaluates, resumes."""

import json
import os
from pathlib import Path

import pytest
import torch
from clirun import run_cli

from sparse3d.cli.overrides import parse_config
from sparse3d.engine.config import ConfigError, update_config
from sparse3d.engine.distributed import World
from sparse3d.engine.registry import discover_methods
from sparse3d.engine.scene import CameraFrusta, Splats
from sparse3d.engine.trainer import Trainer
from sparse3d.geometry.cameras import Cameras, intrinsics_from_fov, look_at_viewmats
from sparse3d.render.rasterize import RasterConfig, rasterize_gaussians
from sparse3d.synthetic.objects.generator import (
    SyntheticObjectsConfig,
    write_synthetic_objects,
)


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
    assert {"psnr", "ssim", "psnr_inside_mask", "ssim_inside_mask"} <= final.keys()
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
    assert {"psnr", "ssim", "psnr_inside_mask", "ssim_inside_mask", "lpips", "views"} <= report.keys()
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


def test_scene_layers_are_the_gaussians_and_the_training_views(tiny_object, tmp_path):
    method = splat_config(tiny_object, tmp_path / "run", steps=1).setup(world=World(), device=torch.device("cpu"))
    splats, frusta = method.get_scene_layers()
    assert isinstance(splats, Splats) and isinstance(frusta, CameraFrusta)
    assert splats.means.shape == (400, 3) and splats.covariances.shape == (400, 3, 3)
    assert splats.rgbs.shape == (400, 3) and splats.opacities.shape == (400,)
    assert 0 <= splats.rgbs.min() and splats.rgbs.max() <= 1 and 0 < splats.opacities.min() < 1
    torch.testing.assert_close(splats.covariances, splats.covariances.transpose(1, 2))
    train = method.data.train_indices
    assert torch.equal(frusta.cameras.viewmats, method.data.cameras.viewmats[train])
    assert frusta.images.dtype == torch.uint8 and frusta.images.shape == (len(train), 32, 32, 3)


def test_outputs_for_a_training_camera_are_the_rasterizer_render(tiny_object, tmp_path):
    method = splat_config(tiny_object, tmp_path / "run", steps=1).setup(world=World(), device=torch.device("cpu"))
    method.update_to_step(10**6)  # every SH band
    camera = method.cameras[method.data.train_indices[0]]
    with torch.no_grad():
        out = method.get_outputs_for_camera(camera)
        s = {k: v.detach() for k, v in method.splats.items()}
        args = (s["means"], s["quats"], s["scales"].exp(), s["opacities"].sigmoid(), torch.cat([s["sh0"], s["shN"]], 1),
                camera.viewmats, camera.Ks, 32, 32)
        rgb, alpha, _ = rasterize_gaussians(*args, RasterConfig(), sh_degree=3, backgrounds=torch.ones(1, 3))
        depth, _, _ = rasterize_gaussians(*args, RasterConfig(render_mode="ED"), sh_degree=3)
    assert out.keys() == {"rgb", "alpha", "depth"}
    assert torch.equal(out["rgb"], rgb[0]) and torch.equal(out["alpha"], alpha[0])
    torch.testing.assert_close(out["depth"], depth[0])
    assert (out["alpha"] > 0.5).any() and (out["depth"][out["alpha"] > 0.5] > 0).all()

    # Any camera, any image size; one at a time.
    eye = torch.tensor([[0.0, -3.0, 1.0]])
    other = Cameras(look_at_viewmats(eye, torch.zeros(1, 3)), intrinsics_from_fov(45.0, 20, 12)[None], 20, 12)
    assert method.get_outputs_for_camera(other)["rgb"].shape == (12, 20, 3)
    with pytest.raises(ValueError, match="one camera"):
        method.get_outputs_for_camera(method.cameras[:2])


@pytest.mark.parametrize("data_format", ["auto", "nerfstudio", "blender", "colmap", "colmap-bin", "colmap-txt"])
def test_every_data_format_name_is_accepted_and_loads(tiny_object, tmp_path, data_format):
    config = update_config(splat_config(tiny_object, tmp_path / "run", steps=1),
                           {"datamanager": {"format": data_format}}, "command line")
    method = config.setup(world=World(), device=torch.device("cpu"))
    assert len(method.data) == 12 and len(method.data.train_indices) >= 9  # COLMAP: every view trains
    if data_format.startswith("colmap-"):
        assert method.data.source.endswith(f"(colmap {data_format[len('colmap-'):]})")


def test_unknown_data_format_lists_the_valid_ones_and_help_shows_them(capsys):
    config = discover_methods()["splat"].default_config()
    valid = r"\['auto', 'nerfstudio', 'blender', 'colmap', 'colmap-bin', 'colmap-txt'\]"
    with pytest.raises(ConfigError, match=rf"^command line: 'datamanager.format': expected one of {valid}, got 'colmap-binary'$"):
        update_config(config, {"datamanager": {"format": "colmap-binary"}}, "command line")
    with pytest.raises(SystemExit):
        parse_config(config, {}, "sparse3d-train", "splat", wants_help=True)
    assert "{auto,nerfstudio,blender,colmap,colmap-bin,colmap-txt}" in capsys.readouterr().out


def test_cli_rejects_negative_max_steps_before_training(tiny_object, tmp_path):
    out = tmp_path / "run"
    result = run_cli("sparse3d-train", "method=splat", f"data={tiny_object}", f"output={out}", "trainer.max_steps=-5",
                     env=dict(os.environ))
    assert result.returncode == 2
    assert "command line: 'trainer.max_steps': expected a value >= 1, got -5" in result.stderr
    assert not out.exists()


def built_splat(data: Path, out: Path, **model):
    config = splat_config(data, out, steps=1)
    for key, value in model.items():
        setattr(config.model, key, value)
    config.datamanager.num_train_views = 4
    return config.setup(world=World(), device=torch.device("cpu"))


def test_random_background_swaps_white_for_the_render_colour(tiny_object, tmp_path):
    splat = built_splat(tiny_object, tmp_path, random_background=True, silhouette_lambda=0.0)
    batch = splat.get_train_batch(0)
    outputs = splat.get_outputs(batch, 0)
    assert not torch.equal(outputs.background, torch.ones_like(outputs.background))
    assert torch.equal(outputs.background, splat.get_outputs(batch, 0).background)  # a function of the step
    # A render equal to the image over the same colour has no loss: the target is the image
    # with its uncovered part turned from white into that colour.
    coverage = splat.coverage[batch].float()[..., None] / 255.0
    image = splat.images[batch].float() / 255.0
    perfect = image + (1.0 - coverage) * (outputs.background[:, None, None, :] - 1.0)
    losses = splat.reference_losses(type(outputs)(perfect, outputs.alpha, outputs.background, outputs.meta), batch)
    assert losses["l1"] == 0.0


def test_silhouette_loss_is_the_bce_of_alpha_against_the_coverage(tiny_object, tmp_path):
    splat = built_splat(tiny_object, tmp_path, silhouette_lambda=0.5)
    batch = splat.get_train_batch(0)
    outputs = splat.get_outputs(batch, 0)
    coverage = splat.coverage[batch].float()[..., None] / 255.0
    expected = 0.5 * torch.nn.functional.binary_cross_entropy(outputs.alpha.clamp(1e-6, 1 - 1e-6), coverage)
    torch.testing.assert_close(splat.get_loss_dict(outputs, batch, 0)["silhouette"], expected)


def test_leave_out_skips_a_view_until_its_step(tiny_object, tmp_path):
    config = splat_config(tiny_object, tmp_path, steps=1)
    config.datamanager.num_train_views, config.datamanager.leave_out, config.datamanager.leave_out_until = 4, 1, 10
    splat = config.setup(world=World(), device=torch.device("cpu"))
    train = splat.data.train_indices.tolist()
    assert splat.train_views(9).tolist() == [train[0], *train[2:]]
    assert splat.train_views(10).tolist() == train
    assert {int(splat.get_train_batch(s)) for s in range(10)} <= {train[0], *train[2:]}
    assert train[1] in {int(splat.get_train_batch(s)) for s in range(10, 60)}


def test_init_from_a_point_file_and_floater_elimination(tiny_object, tmp_path):
    from sparse3d.render.ply import write_points_ply

    g = torch.Generator().manual_seed(0)
    surface = torch.nn.functional.normalize(torch.randn(400, 3, generator=g), dim=1) * 0.5
    points = torch.cat([surface, torch.tensor([[3.0, 3.0, 3.0], [-3.0, 2.5, 3.0]])])
    write_points_ply(tmp_path / "points.ply", points, torch.full((402, 3), 200, dtype=torch.uint8))
    splat = built_splat(tiny_object, tmp_path, init="file", init_file=tmp_path / "points.ply")
    assert torch.equal(splat.splats["means"].detach(), points)
    from sparse3d.engine.trainer import optimizers_for

    optimizers = optimizers_for(splat.get_param_groups())
    assert splat.eliminate_floaters(splat.densification().refine_stop_iter, optimizers) == 2
    assert len(splat.splats["means"]) == 400 and optimizers["means"].param_groups[0]["params"][0] is splat.splats["means"]
