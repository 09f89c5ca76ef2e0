"""strivec and tensorf end to end on a tiny many-view object: the coarse stage places the
tensors on the surface, both fields learn, resume exactly across upsampling and the alpha
mask, and are viewed from any camera."""

import copy
import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch
from clirun import run_cli
from radiance_runs import field_run_config
from torch import nn

from sparse3d.core.grid import VoxelGrid
from sparse3d.data.loader import load_multiview
from sparse3d.engine.distributed import World
from sparse3d.engine.scene import Boxes3D
from sparse3d.engine.trainer import Trainer
from sparse3d.fields.occupancy import Occupancy, cubes_meeting, full_occupancy
from sparse3d.fields.strivec import StrivecFieldConfig, dims_schedule
from sparse3d.methods.radiance_field import swap_parameters
from sparse3d.render.metrics import protocol_target
from sparse3d.render.ply import write_points_ply
from sparse3d.synthetic.objects.generator import (
    SyntheticObjectsConfig,
    write_synthetic_objects,
)


@pytest.fixture(scope="module")
def trained(dense_object, tmp_path_factory) -> dict[str, Trainer]:
    """A strivec and a tensorf run of 60 steps on the tiny object, by method."""
    runs = {}
    for method in ("strivec", "tensorf"):
        config = field_run_config(method, dense_object, tmp_path_factory.mktemp(method) / "run", steps=60)
        runs[method] = Trainer(config, method, config.output, World())
        runs[method].train()
    return runs


@pytest.mark.parametrize("method", ["strivec", "tensorf"])
def test_loss_falls_and_views_render(method, trained):
    trainer = trained[method]
    train = json.loads((trainer.run_dir / "metrics.json").read_text())["train"]
    assert train[-1]["mse"] < 0.5 * train[0]["mse"]
    camera = trainer.method.data.cameras[int(trainer.method.data.test_indices[0])]
    out = trainer.method.get_outputs_for_camera(camera)
    assert out["rgb"].shape == (32, 32, 3) and out["alpha"].shape == out["depth"].shape == (32, 32, 1)
    mask = trainer.method.data.masks[int(trainer.method.data.test_indices[0])]
    # The object is opaque where the mask is, and the depth lies near the camera's distance (4).
    assert out["alpha"][..., 0][mask].mean() > 0.8 and out["alpha"][..., 0][~mask].mean() < 0.2
    depth = out["depth"][..., 0][mask] / out["alpha"][..., 0][mask]
    assert 2.5 < float(depth.median()) < 4.5


def test_supersampled_render_is_the_mean_of_the_shifted_renders(trained):
    method = trained["tensorf"].method
    camera = method.data.cameras[int(method.data.test_indices[0])]
    single, mean = method.get_outputs_for_camera(camera), method.render_camera(camera, 2)
    # S = 2: rays at a quarter and three quarters of the pixel; the same rays as the
    # centre rays of a camera shifted by a quarter pixel each way.
    shifted = []
    for du, dv in ((0.25, 0.25), (-0.25, 0.25), (0.25, -0.25), (-0.25, -0.25)):
        ks = camera.Ks.clone()
        ks[:, 0, 2] += du
        ks[:, 1, 2] += dv
        shifted.append(method.get_outputs_for_camera(dataclasses.replace(camera, Ks=ks)))
    for key in ("rgb", "alpha", "depth"):
        expected = torch.stack([out[key] for out in shifted]).mean(0)
        assert torch.allclose(mean[key], expected, atol=1e-5), key
    assert not torch.allclose(mean["rgb"], single["rgb"], atol=1e-3)  # the object's edges are blended


def test_random_background_goes_behind_the_field_and_the_pixels(trained):
    method = trained["strivec"].method
    method.config.render.random_background = True
    try:
        batch = method.get_train_batch(5)
    finally:
        method.config.render.random_background = False
    coverage = method.coverage[batch.views, batch.pixels[:, 1], batch.pixels[:, 0]]
    image = method.images[batch.views, batch.pixels[:, 1], batch.pixels[:, 0]].float() / 255
    target = method.batch_targets(batch)
    assert coverage.min() == 0 and coverage.max() == 255
    assert torch.allclose(target[coverage == 0], batch.background[coverage == 0])  # the object's absent
    assert torch.equal(target[coverage == 255], image[coverage == 255])
    with torch.no_grad():
        out = method.get_outputs(batch, 5)
        white = method.get_outputs(dataclasses.replace(batch, background=None), 5)
    # what the field leaves uncovered shows the background instead of white
    assert torch.allclose(out.rgb, white.rgb + (1 - white.alpha[:, None]) * (batch.background - 1), atol=1e-5)


@pytest.mark.parametrize("method", ["strivec", "tensorf"])
def test_presets_hold_out_the_images_themselves(method, trained):
    # The presets read the Blender copy (soft alpha): the held-out target is the image as
    # rendered, not the image composited again by a mask.
    data = trained[method].method.data
    view = int(data.test_indices[0])
    target, _ = protocol_target(data.images[view], data.alphas[view], None)
    assert torch.equal(target, data.images[view].float() / 255)


def test_the_masks_copy_whitens_partly_covered_pixels_that_the_blender_copy_keeps(tmp_path):
    config = SyntheticObjectsConfig(objects=("capsule",), resolution=32, num_test_views=1, supersampling=3)
    folder = write_synthetic_objects(tmp_path, config)[0]
    soft, masked = load_multiview(folder, "blender"), load_multiview(folder, "nerfstudio")
    view = int(soft.test_indices[0])
    soft_target, coverage = protocol_target(soft.images[view], soft.alphas[view], None)
    masked_target, _ = protocol_target(masked.images[view], None, masked.masks[view])
    partly = (coverage > 0) & (coverage <= 0.5)  # silhouette pixels the object covers at most half of
    assert partly.sum() > 10
    assert (masked_target[partly] == 1).all() and (soft_target[partly] < 1).any(dim=-1).all()


def test_preset_on_data_without_a_blender_copy_names_the_format_key(dense_object, tmp_path):
    nerfstudio_only = tmp_path / "capsule"
    nerfstudio_only.mkdir()
    for name in ("transforms.json", "images", "masks", "depths"):
        (nerfstudio_only / name).symlink_to(dense_object / name)
    config = field_run_config("strivec", nerfstudio_only, tmp_path / "run", steps=1)
    with pytest.raises(FileNotFoundError, match="transforms_train.json not found .*datamanager.format=auto"):
        Trainer(config, "strivec", config.output, World())
    config.datamanager.format = "auto"
    assert Trainer(config, "strivec", config.output, World()).method.data.alphas is None  # the masks' copy


def test_strivec_places_tensors_on_the_coarse_surface_and_shows_their_boxes(dense_object, tmp_path):
    config = field_run_config("strivec", dense_object, tmp_path / "run", steps=1)
    method = Trainer(config, "strivec", config.output, World()).method
    points = torch.load(config.output / "coarse" / "points.pt", weights_only=True)
    assert len(points) > 0 and points.norm(dim=1).max() < 1.3  # the capsule fits the unit sphere
    for level, v in zip(method.field.levels, config.model.tensors.voxel_sizes):
        # every coarse point lies in its own voxel's tensor, and every tensor holds a point
        index, _ = level.lookup(points, 8)
        assert (index[:, 0] >= 0).all()
        assert len(torch.unique(index[index >= 0])) <= level.num_tensors
        assert torch.equal(level.occupied, level.grid.keys(level.grid.cells(points)).unique())
    boxes = [layer for layer in method.get_scene_layers() if isinstance(layer, Boxes3D)]
    assert [len(b.boxes) for b in boxes] == [level.num_tensors for level in method.field.levels]


@pytest.mark.parametrize("method", ["strivec", "tensorf"])
def test_resume_across_upsampling_and_alpha_mask_matches_uninterrupted_run(method, dense_object, tmp_path):
    def run(out: Path, crash_at: int | None = None):
        config = field_run_config(method, dense_object, out, steps=30)
        config.trainer.ckpt_every = 10
        config.render.alpha_mask_steps = (18, 22)  # one mask before the restored checkpoint, one after
        # masks tight enough to shrink tensorf's box and prune strivec's tensors
        config.render.alpha_mask_threshold = {"strivec": 3e-4, "tensorf": 1e-2}[method]
        trainer = Trainer(config, method, out, World())
        if crash_at is not None:
            outputs = trainer.method.get_outputs

            def crash(batch, step):
                if step == crash_at:
                    raise RuntimeError("simulated crash")
                return outputs(batch, step)

            trainer.method.get_outputs = crash
            with pytest.raises(RuntimeError, match="simulated crash"):
                trainer.train()
            return None
        trainer.train()
        return trainer.method

    uninterrupted = run(tmp_path / "a")
    run(tmp_path / "b", crash_at=25)  # after the upsamplings (7, 15) and both masks; newest checkpoint: 20
    resumed = run(tmp_path / "b")
    assert len(resumed.occupancy.keys) > 0  # the steps after the masks still learn
    assert torch.equal(uninterrupted.occupancy.keys, resumed.occupancy.keys)
    if method == "strivec":  # the masks pruned tensors before and after the checkpoint
        points = torch.load(tmp_path / "b" / "coarse" / "points.pt", weights_only=True)
        placed = [len(level.grid.keys(level.grid.cells(points)).unique()) for level in resumed.field.levels]
        assert sum(level.num_tensors for level in resumed.field.levels) < sum(placed)
        for a, b in zip(uninterrupted.field.levels, resumed.field.levels):
            assert torch.equal(a.occupied, b.occupied) and torch.equal(a.centers, b.centers)
    if method == "tensorf":  # the box the first mask shrank it to
        assert ((resumed.field.lower > resumed.box_lower) | (resumed.field.upper < resumed.box_upper)).any()
        assert torch.equal(uninterrupted.field.lower, resumed.field.lower)
        assert torch.equal(uninterrupted.field.upper, resumed.field.upper)
    for (name, a), (_, b) in zip(uninterrupted.named_parameters(), resumed.named_parameters()):
        assert torch.equal(a, b), name


def test_pruning_drops_the_tensors_no_sample_reaches_and_keeps_every_render_bit(trained):
    method = copy.deepcopy(trained["strivec"].method)
    camera = method.data.cameras[int(method.data.test_indices[0])]
    centers = method.occupancy.centers()
    method.occupancy = Occupancy(method.occupancy.grid, method.occupancy.keys[centers[:, 0] < 0.2])  # cut the object
    before = [level.num_tensors for level in method.field.levels]
    rendered = method.get_outputs_for_camera(camera)
    method.fit_to_mask(0, {})
    after = [level.num_tensors for level in method.field.levels]
    assert all(a <= b for a, b in zip(after, before)) and sum(after) < sum(before)
    for level in method.field.levels:
        assert cubes_meeting(method.occupancy, level.centers, level.half_size).all()
        assert level.density.shape[0] == level.appearance.shape[0] == level.num_tensors
    again = method.get_outputs_for_camera(camera)
    for key in ("rgb", "alpha", "depth"):
        assert torch.equal(rendered[key], again[key]), key


def test_the_mask_drops_the_inside_of_a_solid_that_no_ray_reaches(trained):
    method = copy.deepcopy(trained["tensorf"].method)

    class SolidBall(nn.Module):  # opaque inside radius 0.5
        def lookups(self, points):
            return None

        def sigma(self, points, lookups=None):
            return torch.where(points.norm(dim=1) < 0.5, 1000.0, 0.0)

    method.field = SolidBall()
    method.sample_step = lambda: 0.01
    occupancy = full_occupancy(VoxelGrid((-1.0, -1.0, -1.0), 0.1, (20, 20, 20)))
    radius = occupancy.centers().norm(dim=1)
    kept = torch.isin(occupancy.keys, method.seen(occupancy).keys)
    assert kept[(radius - 0.5).abs() < 0.03].all()  # the surface
    assert not kept[radius < 0.25].any()  # the inside
    assert not kept[radius > 0.8].any()  # the empty space round it


def test_kept_rows_train_on_as_if_the_others_had_never_been():
    torch.manual_seed(0)
    full = nn.Parameter(torch.randn(6, 3))
    rows = torch.tensor([True, False, True, True, False, False])
    alone = nn.Parameter(full.detach()[rows].clone())
    target = torch.randn(6, 3)
    optimizers = {"a": torch.optim.Adam([full], lr=0.1), "b": torch.optim.Adam([alone], lr=0.1)}
    for step in range(6):
        if step == 3:  # prune the full one's rows mid-way: its optimiser state follows
            pruned = nn.Parameter(full.detach()[rows])
            swap_parameters({"a": optimizers["a"]}, {full: (pruned, rows)})
            full = pruned
        for optimizer in optimizers.values():
            optimizer.zero_grad()
        scale = torch.arange(1.0, 7.0)[:, None]
        loss_full = ((full - (target[rows] if step >= 3 else target)) ** 2 * (scale[rows] if step >= 3 else scale)).sum()
        loss_alone = ((alone - target[rows]) ** 2 * scale[rows]).sum()
        (loss_full + loss_alone).backward()
        for optimizer in optimizers.values():
            optimizer.step()
    assert optimizers["a"].param_groups[0]["params"][0] is full
    assert torch.equal(full, alone)


def test_points_file_outside_the_scene_box_is_a_clear_error(dense_object, tmp_path):
    far = tmp_path / "far.ply"
    write_points_ply(far, torch.full((5, 3), 10.0), torch.zeros(5, 3, dtype=torch.uint8))
    config = field_run_config("strivec", dense_object, tmp_path / "run", steps=1)
    config.model.points_file = far
    with pytest.raises(ValueError, match="no points inside the scene box"):
        Trainer(config, "strivec", config.output, World())


def test_field_config_checks_each_level():
    with pytest.raises(ValueError, match="one value per level"):
        StrivecFieldConfig(dims=(29, 15))
    with pytest.raises(ValueError, match="half size 0.5 must be in"):
        StrivecFieldConfig(half_sizes=(0.5, 0.15, 0.075))


def test_dims_schedule_reaches_the_final_length():
    assert dims_schedule(29, 121, 5) == [47, 66, 84, 103, 121]
    assert dims_schedule(7, 31, 0) == []


def test_exports_write_the_tensor_boxes_and_a_density_mesh_round_the_object(trained):
    trimesh = pytest.importorskip("trimesh")
    run, method = trained["strivec"].run_dir, trained["strivec"].method
    for i, level in enumerate(method.field.levels):
        boxes = trimesh.load(run / f"tensors_level_{i}.ply", process=False)
        assert len(boxes.vertices) == 8 * level.num_tensors and len(boxes.faces) == 12 * level.num_tensors
    out = run_cli("sparse3d-export", "density", f"run={run}", "resolution=48", "level=0.05", env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    mesh = trimesh.load(run / "density_mesh.ply", process=False)
    radius = torch.as_tensor(mesh.vertices).norm(dim=1)
    assert len(mesh.faces) > 100 and radius.max() < 1.5  # the capsule fits the unit sphere; no phantom far away
    refused = run_cli("sparse3d-export", "density", f"run={run}", "resolution=16", "level=2.0", env=dict(os.environ))
    assert refused.returncode != 0 and "never crosses level 2.0" in refused.stderr
