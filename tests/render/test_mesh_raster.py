"""The mesh rasterizer against analytic ray-plane intersections, occlusion order, and
chunking invariance."""

import pytest
import torch

from sparse3d.render import mesh_raster
from sparse3d.render.mesh_raster import interpolate_attributes, rasterize_mesh

W, H = 40, 30
K = torch.tensor([[35.0, 0.0, 20.0], [0.0, 35.0, 15.0], [0.0, 0.0, 1.0]])


def _tilted_quad():
    """Quad on the plane z = 2 + 0.5 x, x in [-1, 0.8], y in [-0.6, 0.7] (camera frame)."""
    xs, ys = torch.tensor([-1.0, 0.8], dtype=torch.float64), torch.tensor([-0.6, 0.7], dtype=torch.float64)
    verts = torch.tensor([[x, y, 2 + 0.5 * x] for x in xs for y in ys], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 3], [0, 3, 2]])
    return verts, faces


def _pixel_rays():
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    return torch.stack([(u + 0.5 - 20.0) / 35.0, (v + 0.5 - 15.0) / 35.0, torch.ones_like(u)], -1)  # [H, W, 3], z = 1


def test_depth_coverage_and_attributes_match_ray_plane_intersection():
    verts, faces = _tilted_quad()
    raster = rasterize_mesh(verts, faces, torch.eye(4), K, W, H)
    rays = _pixel_rays()
    t = 2.0 / (1.0 - 0.5 * rays[..., 0])  # ray t * d meets z = 2 + 0.5 x; depth = t since d_z = 1
    hit = rays * t[..., None]
    inside = (hit[..., 0] >= -1) & (hit[..., 0] <= 0.8) & (hit[..., 1] >= -0.6) & (hit[..., 1] <= 0.7)
    assert inside.sum() > 200
    assert torch.equal(raster.mask, inside)
    torch.testing.assert_close(raster.depth[inside], t[inside].float())
    assert (raster.depth[~inside] == 0).all() and (raster.face_ids[~inside] == -1).all()
    # Perspective-correct interpolation of positions recovers the exact surface points.
    positions = interpolate_attributes(raster, faces, verts)
    torch.testing.assert_close(positions[inside], hit[inside], atol=1e-6, rtol=0)
    torch.testing.assert_close(raster.bary.sum(-1)[inside], torch.ones(int(inside.sum())))


@pytest.mark.parametrize("near_first", [True, False])
def test_nearest_surface_wins_whatever_the_face_order(near_first):
    big = torch.tensor([[-3.0, -3.0, 0.0], [3.0, -3.0, 0.0], [0.0, 3.0, 0.0]], dtype=torch.float64)
    near, far = big + torch.tensor([0.0, 0.0, 3.0]), big * 2 + torch.tensor([0.0, 0.0, 6.0])
    verts = torch.cat([near, far] if near_first else [far, near])
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    raster = rasterize_mesh(verts, faces, torch.eye(4), K, W, H)
    near_id = 0 if near_first else 1
    centre = raster.face_ids[15, 20]
    assert centre == near_id and raster.depth[15, 20] == 3.0
    assert set(raster.face_ids[raster.mask].unique().tolist()) <= {0, 1}


def test_world_to_camera_transform_and_near_plane():
    verts, faces = _tilted_quad()
    # Move the quad 5 units along world +x, and a camera there (viewmat = translate by -5).
    viewmat = torch.eye(4)
    viewmat[0, 3] = -5.0
    moved = rasterize_mesh(verts + torch.tensor([5.0, 0.0, 0.0], dtype=torch.float64), faces, viewmat, K, W, H)
    base = rasterize_mesh(verts, faces, torch.eye(4), K, W, H)
    assert torch.equal(moved.mask, base.mask)
    torch.testing.assert_close(moved.depth, base.depth)
    behind = rasterize_mesh(verts - torch.tensor([0.0, 0.0, 2.5], dtype=torch.float64), faces, torch.eye(4), K, W, H)
    assert not behind.mask.any()  # faces crossing the near plane are dropped


def test_chunking_does_not_change_the_result(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    verts = torch.rand(300, 3, generator=gen, dtype=torch.float64) * torch.tensor([2.0, 2.0, 3.0]) + torch.tensor(
        [-1.0, -1.0, 2.0], dtype=torch.float64
    )
    faces = torch.randint(0, 300, (400, 3), generator=gen)
    full = rasterize_mesh(verts, faces, torch.eye(4), K, W, H)
    monkeypatch.setattr(mesh_raster, "_PAIRS_PER_CHUNK", 50)
    chunked = rasterize_mesh(verts, faces, torch.eye(4), K, W, H)
    assert full.mask.sum() > 100
    assert torch.equal(full.face_ids, chunked.face_ids)
    assert torch.equal(full.depth, chunked.depth)
    assert torch.equal(full.bary, chunked.bary)


def test_bad_inputs():
    verts, faces = _tilted_quad()
    with pytest.raises(ValueError, match=r"face indices must lie in \[0, 4\)"):
        rasterize_mesh(verts, faces + 3, torch.eye(4), K, W, H)
    with pytest.raises(ValueError, match="faces must be int64"):
        rasterize_mesh(verts, faces.int(), torch.eye(4), K, W, H)
