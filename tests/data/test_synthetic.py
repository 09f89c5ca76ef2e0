"""The synthetic object generator: deterministic bytes, exact depth and masks."""

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from sparse3d.data.loader import load_multiview
from sparse3d.data.synthetic import SyntheticObjectsConfig, write_synthetic_objects
from sparse3d.data.synthetic.objects import build_object


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
        mask = data.masks[i]
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


def test_regenerating_replaces_the_folder_without_leftovers(tmp_path):
    write_synthetic_objects(tmp_path, SyntheticObjectsConfig(objects=("box",), resolution=16, num_test_views=4))
    (tmp_path / "box" / "stale.txt").write_text("from an earlier run")
    config = SyntheticObjectsConfig(objects=("box",), resolution=16, num_test_views=2)
    folder = write_synthetic_objects(tmp_path, config)[0]
    assert not (folder / "stale.txt").exists() and not (folder / "images" / "012.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["box"]  # no staging folders left
    assert len(load_multiview(folder)) == 11
