"""The synthetic object generator: deterministic bytes, exact depth and masks."""

import dataclasses
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from sparse3d.data.blender import read_blender
from sparse3d.data.images import rgb_over_white_and_mask
from sparse3d.data.loader import load_multiview
from sparse3d.synthetic.objects import SyntheticObjectsConfig, write_synthetic_objects
from sparse3d.synthetic.objects.generator import (
    render_object,
    render_view,
    synthetic_cameras,
)
from sparse3d.synthetic.objects.meshes import Mesh
from sparse3d.synthetic.objects.objects import SyntheticObject, build_object


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_byte_identical_across_runs_and_thread_counts(tmp_path):
    config = SyntheticObjectsConfig(objects=("box", "capsule"), resolution=32, num_test_views=2)
    first = write_synthetic_objects(tmp_path / "a", config)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        second = write_synthetic_objects(tmp_path / "b", config)
    finally:
        torch.set_num_threads(threads)
    assert [p.name for p in first] == ["box", "capsule"]
    for a, b in zip(first, second):
        digest = _digest(a)
        assert len(digest) > 40 and digest == _digest(b)
    other = write_synthetic_objects(
        tmp_path / "c", SyntheticObjectsConfig(objects=("box",), resolution=32, num_test_views=2, seed=1)
    )
    assert _digest(other[0])["transforms.json"] != _digest(first[0])["transforms.json"]


def test_depth_unprojects_onto_the_sphere(tmp_path):
    folder = write_synthetic_objects(
        tmp_path, SyntheticObjectsConfig(objects=("sphere",), resolution=64, num_test_views=2)
    )[0]
    data = load_multiview(folder)
    cams = data.cameras
    v, u = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    pix = torch.stack([u + 0.5, v + 0.5, torch.ones_like(u)], -1)
    for i in range(len(data)):
        mask = data.depths[i] > 0
        rays = pix[mask] @ torch.linalg.inv(cams.Ks[i]).T  # camera frame, z = 1
        cam_pts = rays * data.depths[i][mask][:, None]
        world = (cam_pts - cams.viewmats[i, :3, 3]) @ cams.viewmats[i, :3, :3]
        radius = world.norm(dim=1)
        # The 32 x 64 UV sphere is inscribed in the unit sphere: chords sag by < 1 - cos(pi/32).
        assert radius.max() <= 1 + 1e-5 and radius.min() >= 1 - 5e-3, i
    # About pi r^2 of the image: a unit sphere seen from distance ~4 with f = 64 / (2 tan 20 deg).
    focal = float(cams.Ks[0, 0, 0])
    dist = float(cams.centers[9].norm())
    expected = np.pi * (focal / np.sqrt(dist**2 - 1)) ** 2
    assert abs(float(data.masks[9].sum()) - expected) / expected < 0.05
    # The soft alpha measures the area better than any count of whole pixels.
    coverage = float(read_blender(folder).alphas[9].double().sum()) / 255
    assert abs(coverage - expected) / expected < 0.01


def test_objects_are_centred_in_the_unit_sphere():
    for name in ("sphere", "torus", "capsule", "box"):
        verts = build_object(name).mesh.verts
        assert verts.norm(dim=1).max() == pytest.approx(1.0)
        assert torch.allclose((verts.amax(0) + verts.amin(0)) / 2, torch.zeros(3, dtype=torch.float64), atol=0.2)


@pytest.mark.skipif(importlib.util.find_spec("pyvista") is None, reason="pyvista's example files are not installed")
def test_registry_meshes_when_pyvista_is_installed():
    ant = build_object("pyvista_ant")
    assert ant.mesh.faces.shape == (912, 3) and ant.mesh.verts.shape == (486, 3)
    assert ant.mesh.verts.norm(dim=1).max() == pytest.approx(1.0)
    earth = build_object("pyvista_earth")
    # The texture's top rows are the Arctic (white-ish), its middle row crosses the oceans.
    north = earth.albedo(torch.zeros(1, 3), torch.tensor([[0.3, 0.999]], dtype=torch.float64))
    assert north.min() > 0.6


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic object 'teapot'"):
        write_synthetic_objects(tmp_path, SyntheticObjectsConfig(objects=("teapot",)))
    with pytest.raises(ValueError, match="distinct"):
        write_synthetic_objects(tmp_path, SyntheticObjectsConfig(objects=("box", "box")))
    for bad in (0, 2, -1):
        with pytest.raises(ValueError, match=rf"SyntheticObjectsConfig.supersampling must be an odd int.*got {bad}"):
            write_synthetic_objects(tmp_path, SyntheticObjectsConfig(objects=("box",), supersampling=bad))
    assert not any(tmp_path.iterdir())  # rejected before anything is written


def test_regenerating_replaces_the_folder_without_leftovers(tmp_path):
    write_synthetic_objects(tmp_path, SyntheticObjectsConfig(objects=("box",), resolution=16, num_test_views=4))
    (tmp_path / "box" / "stale.txt").write_text("from an earlier run")
    config = SyntheticObjectsConfig(objects=("box",), resolution=16, num_test_views=2)
    folder = write_synthetic_objects(tmp_path, config)[0]
    assert not (folder / "stale.txt").exists() and not (folder / "images" / "012.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["box"]  # no staging folders left
    assert len(load_multiview(folder)) == 11


def _flat_square(x0: float, x1: float, y0: float, y1: float, depth: float, rgb: tuple[float, float, float]):
    """A one-colour square facing the camera at the origin (OpenCV axes, looking down +z)."""
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    verts = torch.tensor([(x, y, depth) for x, y in corners], dtype=torch.float64)
    normals = torch.tensor([[0.0, 0.0, -1.0]], dtype=torch.float64).expand(4, 3)
    mesh = Mesh(verts, torch.tensor([[0, 1, 2], [0, 2, 3]]), normals, torch.zeros(4, 2, dtype=torch.float64))
    albedo = torch.tensor(rgb, dtype=torch.float64)
    return SyntheticObject("square", mesh, lambda pos, uv: albedo.expand(pos.shape[:-1] + (3,)))


def test_box_filter_of_a_flat_square_on_a_hand_worked_case():
    # K = diag(5, 5, 1) at depth 2: image x = 2.5 * world x. The square spans x in [2.4, 5.8]
    # and y in [1.7, 6.2] pixels. With 3 x 3 samples per pixel at offsets 1/6, 1/2, 5/6,
    # pixel column 2 has 2 covered sample columns (2.5, 2.83), 3-4 have 3, 5 has 2 (5.17, 5.5);
    # pixel row 1 has 1 sample row (1.83), rows 2-5 have 3, row 6 has 1 (6.17).
    obj = _flat_square(2.4 / 2.5, 5.8 / 2.5, 1.7 / 2.5, 6.2 / 2.5, 2.0, (0.9, 0.5, 0.2))
    K = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 1.0]])
    rgba, depth = render_view(obj, torch.eye(4), K, 8, 8, 3)
    cols = torch.tensor([0, 0, 2, 3, 3, 2, 0, 0])
    rows = torch.tensor([0, 1, 3, 3, 3, 3, 1, 0])
    covered = rows[:, None] * cols[None, :]  # of 9 samples
    assert torch.equal(rgba[..., 3], (covered * 255 / 9).round().to(torch.uint8))
    assert rgba[1, 2, 3] == 57 and rgba[2, 2, 3] == 170  # 2/9 and 6/9 of 255
    # Facing the camera (normal -z), only the second light reaches the square: ambient 0.3 +
    # 0.25 * 0.2 / |(-0.5, 0.5, -0.2)| = 0.36804; times the albedo and 255: 84.46, 46.92, 18.77.
    flat = torch.tensor([84, 47, 19], dtype=torch.uint8)
    straight = torch.where(covered[..., None] > 0, flat, 255)
    assert torch.equal(rgba[..., :3], straight)
    # Depth exactly at the pixel centres u + 0.5 inside [2.4, 5.8] x [1.7, 6.2].
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[2:6, 2:6] = True
    assert torch.equal(depth, torch.where(inside, 2.0, 0.0))
    # One sample per pixel: hard coverage of the centres.
    rgba1, depth1 = render_view(obj, torch.eye(4), K, 8, 8, 1)
    assert torch.equal(rgba1[..., 3], inside.to(torch.uint8) * 255) and torch.equal(depth1, depth)


def test_supersampling_box_filters_a_render_at_three_times_the_resolution():
    obj = build_object("torus")
    cams = synthetic_cameras(SyntheticObjectsConfig(resolution=40, num_test_views=1))
    one, three = render_object(obj, cams, 1), render_object(obj, cams, 3)
    # One sample per pixel: hard alpha, so compositing leaves covered pixels as rendered.
    assert set(one.alphas.unique().tolist()) == {0, 255}
    assert torch.equal(one.masks, one.alphas == 255) and torch.equal(one.masks, one.depths > 0)
    # The middle sample of 3 x 3 is the pixel centre: the same depth map.
    assert torch.equal(three.depths, one.depths)
    for i in (0, 4, 9):
        rgba, _ = render_view(obj, cams.viewmats[i], cams.Ks[i], 40, 40, 3)
        assert torch.equal(three.images[i], torch.from_numpy(rgb_over_white_and_mask(rgba.numpy())[0]))
        assert torch.equal(three.alphas[i], rgba[..., 3])
        K_fine = cams.Ks[i].double().clone()
        K_fine[:2] *= 3
        fine, _ = render_view(obj, cams.viewmats[i], K_fine, 120, 120, 1)  # [120, 120, 4]
        blocks = fine.reshape(40, 3, 40, 3, 4).permute(0, 2, 1, 3, 4).reshape(40, 40, 9, 4).double()
        hits = blocks[..., 3] == 255  # [40, 40, 9]
        alpha = rgba[..., 3]
        assert torch.equal(alpha, (hits.sum(-1) * 255 / 9).round().to(torch.uint8)), i
        assert ((alpha > 0) & (alpha < 255)).sum() > 40, i  # a soft silhouette
        # Straight colour = mean of the covered samples; both sides round once, hence 1 level.
        mean = (blocks[..., :3] * hits[..., None]).sum(2) / hits.sum(-1, keepdim=True).clamp(min=1)
        on = alpha > 0
        assert (rgba[..., :3][on].double() - mean[on]).abs().max() <= 1, i
        assert (rgba[..., :3][~on] == 255).all(), i
        # ... and not simply the centre sample (blocks' sample 4).
        assert (rgba[..., :3][on].double() - blocks[..., 4, :3][on]).abs().max() > 10, i


def test_dense_views_add_training_views_and_keep_the_rest():
    base = SyntheticObjectsConfig(objects=("sphere",), resolution=16, num_test_views=3)
    dense = dataclasses.replace(base, num_dense_views=10)
    plain, more = synthetic_cameras(base), synthetic_cameras(dense)
    assert len(more) == len(plain) + 10
    assert torch.equal(more.viewmats[:9], plain.viewmats[:9])  # the rig (and the sparse splits) unchanged
    assert torch.equal(more.viewmats[-3:], plain.viewmats[-3:])  # the held-out views unchanged
    elevations = torch.rad2deg(torch.asin(more.centers[9:-3, 2] / more.centers[9:-3].norm(dim=1)))
    assert elevations.min() > -10.01 and elevations.max() < 80.01
