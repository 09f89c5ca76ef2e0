"""Visual hull: analytic shapes with exact masks against a dense-carving oracle and the
silhouette cones, invariance to the scene's scale and position, an outvoted wrong mask,
colours, and the errors that name their cause."""

import math

import pytest
import torch
from torch import Tensor

from sparse3d.geometry.cameras import Cameras, intrinsics_from_fov, look_at_viewmats
from sparse3d.reconstruction.hull import (
    HullConfig,
    VisualHull,
    _hits,
    _views,
    search_cube,
    visual_hull,
)

W = 48  # image side in pixels
FOV = 40.0
CONFIG = HullConfig(resolution=24, coarse_resolution=16)
# Unions of balls (centres [K, 3], radii [K]): one ball, and a tilted ring of 8 balls whose
# hole the hull of a few views partly fills.
_RING = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
SHAPES = {
    "sphere": (torch.tensor([[0.1, -0.2, 0.15]], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)),
    "ring": (
        torch.stack([_RING.cos(), 0.8 * _RING.sin(), 0.6 * _RING.sin()], 1) + torch.tensor([0.1, 0.0, -0.1]),
        torch.full((8,), 0.35, dtype=torch.float64),
    ),
}


def _cameras(n: int, scale: float = 1.0, offset: tuple[float, float, float] = (0.0, 0.0, 0.0), fovs=None) -> Cameras:
    """n cameras 4 units from the origin, around it at alternating elevations, aimed at
    points near it (so the optical axes do not meet exactly), then scaled and moved."""
    az = 2 * math.pi * torch.arange(n, dtype=torch.float64) / n + 0.3
    el = torch.tensor([0.5, -0.25], dtype=torch.float64).repeat(n)[:n]
    eyes = 4.0 * torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], 1)
    targets = 0.1 * torch.randn(n, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    shift = torch.tensor(offset, dtype=torch.float64)
    Ks = torch.stack([intrinsics_from_fov(f, W, W) for f in (fovs or [FOV] * n)])
    return Cameras(look_at_viewmats(scale * eyes + shift, scale * targets + shift), Ks, W, W)


def _rays(cams: Cameras) -> tuple[Tensor, Tensor]:
    """float64 camera centres [V, 3] and world directions [V, H W, 3] through the pixel centres."""
    v, u = torch.meshgrid(*[torch.arange(W, dtype=torch.float64) + 0.5] * 2, indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)], -1).reshape(-1, 3)
    dirs = pix[None] @ torch.linalg.inv(cams.Ks.double()).transpose(1, 2) @ cams.viewmats.double()[:, :3, :3]
    return cams.centers.double(), dirs


def _ray_hits(origins: Tensor, dirs: Tensor, centres: Tensor, radii: Tensor) -> Tensor:
    """bool [V, R]: whether rays origins [V, 3] + t dirs [V, R, 3], t > 0, meet a ball."""
    oc = centres[None, None] - origins[:, None, None]  # [V, 1, K, 3]
    d = dirs[:, :, None]  # [V, R, 1, 3]
    t = (oc * d).sum(-1) / (d * d).sum(-1)
    dist2 = (oc * oc).sum(-1) - t * (oc * d).sum(-1)
    return ((dist2 < radii**2) & (t > 0)).any(-1)


def _masks(cams: Cameras, shape: str) -> Tensor:
    """bool [V, W, W] exact masks: the pixels whose centre ray meets the shape."""
    return _ray_hits(*_rays(cams), *SHAPES[shape]).reshape(len(cams), W, W)


def _centres(hull: VisualHull, coords: Tensor) -> Tensor:
    return hull.origin + (coords + 0.5) * hull.voxel_size


def _dense_carving(cams: Cameras, masks: Tensor, hull: VisualHull, agree: int) -> Tensor:
    """int64 [P, 3] coords of every voxel of the hull's grid, extended over the search cube,
    whose centre passes the hull test: brute force, through Cameras.project."""
    center, half = search_cube(cams)
    lo = ((center - half - hull.origin) / hull.voxel_size).floor().long().tolist()
    hi = ((center + half - hull.origin) / hull.voxel_size).ceil().long().tolist()
    coords = torch.cartesian_prod(*[torch.arange(a, b) for a, b in zip(lo, hi)])
    in_cube = (_centres(hull, coords) - center).abs().amax(1) <= half
    coords = coords[in_cube]
    points = _centres(hull, coords)
    cams64 = Cameras(cams.viewmats.double(), cams.Ks.double(), W, W)
    u, v = cams64.project(points).floor().long().unbind(-1)  # [V, P]
    inside = (cams64.to_camera(points)[..., 2] > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < W)
    views = torch.arange(len(cams))[:, None]
    hits = inside & masks[views, v.clamp(0, W - 1), u.clamp(0, W - 1)]
    return coords[hits.sum(0) >= agree]


def _inner_points(shape: str, depth: float, n: int = 4000) -> Tensor:
    """float64 [<= n, 3] random points at least ``depth`` inside the shape."""
    centres, radii = SHAPES[shape]
    gen = torch.Generator().manual_seed(1)
    pick = torch.randint(len(radii), (n,), generator=gen)
    offsets = 2 * torch.rand(n, 3, generator=gen, dtype=torch.float64) - 1
    points = centres[pick] + offsets * (radii[pick] - depth)[:, None]
    return points[(points[:, None] - centres).norm(dim=-1).sub(radii - depth).le(0).any(1)]


def _kept(hull: VisualHull, points: Tensor) -> Tensor:
    """bool [N]: whether each point lies in a kept voxel of the hull."""
    cells = ((points - hull.origin) / hull.voxel_size).floor().long()
    return (cells[:, None] == hull.coords.long()).all(-1).any(1)


def _pixel_footprint(cams: Cameras) -> float:
    """A bound on the distance, at the scene, between the ray of a point and the ray through
    the centre of its pixel: half a pixel diagonal at the largest depth."""
    depth = float(cams.centers.norm(dim=1).max()) + 2.0
    return depth * math.sqrt(0.5) / float(cams.Ks[:, 0, 0].min())


# (coarse resolution 12, resolution 40): the last coarse level's voxels are wider than the
# final ones, so some hold 2 final centres along an axis; (16, 24): they are narrower.
@pytest.mark.parametrize(
    ("shape", "n_views", "coarse", "resolution"), [("sphere", 4, 16, 24), ("sphere", 4, 12, 40), ("ring", 6, 16, 24)]
)
def test_hull_equals_dense_carving_contains_the_shape_and_hugs_the_cones(shape, n_views, coarse, resolution):
    cams = _cameras(n_views)
    masks = _masks(cams, shape)
    hull = visual_hull(cams, masks, None, HullConfig(resolution=resolution, coarse_resolution=coarse))
    agree = n_views - 1
    assert max(hull.shape) == resolution and len(hull.points) > 500
    assert hull.points.dtype == torch.float32 and hull.coords.dtype == torch.int32
    assert (hull.coords >= 0).all() and (hull.coords < torch.tensor(hull.shape)).all()
    torch.testing.assert_close(hull.points, _centres(hull, hull.coords.long()).float())
    # Coarse to fine loses nothing: the same voxels as testing every centre of the cube.
    dense = _dense_carving(cams, masks, hull, agree)
    assert torch.equal(dense, hull.coords.long())
    # Contains the shape: points deep enough inside that their voxel's centre projects onto
    # a pixel whose centre ray still meets the shape (voxel half diagonal + pixel footprint).
    footprint = _pixel_footprint(cams)
    inner = _inner_points(shape, 0.5 * math.sqrt(3) * hull.voxel_size + footprint)
    assert len(inner) > 500 and _kept(hull, inner).all()
    # Hugs the silhouette cones: every kept centre's own ray passes within one pixel
    # footprint of the shape in >= agree views.
    centres, radii = SHAPES[shape]
    origins = cams.centers.double()
    dirs = hull.points.double()[None] - origins[:, None]  # [V, P, 3]
    near = _ray_hits(origins, dirs, centres, radii + footprint)
    assert (near.sum(0) >= agree).all()


def test_scene_scaled_by_100_and_moved_far_away_gives_the_same_hull():
    cams, offset = _cameras(4), torch.tensor([-142.0, -426.0, 603.0], dtype=torch.float64)
    far = _cameras(4, scale=100.0, offset=tuple(offset.tolist()))
    masks = _masks(cams, "ring")  # the same images: only the units and the placement change
    near_hull, far_hull = visual_hull(cams, masks, None, CONFIG), visual_hull(far, masks, None, CONFIG)
    assert far_hull.shape == near_hull.shape and torch.equal(far_hull.coords, near_hull.coords)
    assert far_hull.voxel_size == pytest.approx(100 * near_hull.voxel_size, rel=1e-5)
    torch.testing.assert_close(far_hull.origin, 100 * near_hull.origin + offset, rtol=0, atol=1e-3)
    torch.testing.assert_close(far_hull.points.double(), 100 * near_hull.points.double() + offset, rtol=0, atol=1e-2)


def test_one_wrong_mask_is_outvoted_by_the_other_views():
    cams = _cameras(4)
    masks = _masks(cams, "sphere")
    masks[1] = masks[1].roll(W // 3, dims=1)  # view 1's mask slid a third of the image aside
    hull = visual_hull(cams, masks, None, CONFIG)  # default: 3 of the 4 views agree
    inner = _inner_points("sphere", 0.5 * math.sqrt(3) * hull.voxel_size + _pixel_footprint(cams))
    assert _kept(hull, inner).all()
    strict = visual_hull(cams, masks, None, HullConfig(resolution=24, coarse_resolution=16, agree=4))
    assert not _kept(strict, inner).all()  # requiring all 4 views, the wrong one carves into the ball


def test_colours_average_the_views_whose_image_holds_the_point():
    # View 0 zooms in so that part of the hull lies outside its image; its mask is full.
    cams = _cameras(4, fovs=[12.0, FOV, FOV, FOV])
    masks = _masks(cams, "sphere")
    assert masks[0].all() and not masks[1:].all()
    palette = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255], [90, 90, 90]], dtype=torch.uint8)
    images = palette[:, None, None].expand(4, W, W, 3)
    hull = visual_hull(cams, masks, images, CONFIG)
    u, v = cams.project(_centres(hull, hull.coords.long())).floor().unbind(-1)
    seen = (u >= 0) & (u < W) & (v >= 0) & (v < W)  # [4, P]; every hull point is in front
    assert seen[1:].all() and 0 < seen[0].sum() < len(hull.points)
    expected = (seen[..., None] * palette[:, None].double()).sum(0) / seen.sum(0)[:, None]
    assert torch.equal(hull.colors, expected.round().to(torch.uint8))
    assert torch.equal(visual_hull(cams, masks, images.float() / 255, CONFIG).colors, hull.colors)
    assert (visual_hull(cams, masks, None, CONFIG).colors == 128).all()


def test_uint8_masks_are_set_from_128():
    cams = _cameras(4)
    masks = _masks(cams, "sphere")
    hull = visual_hull(cams, masks, None, CONFIG)
    as_uint8 = torch.where(masks, 200, 100).to(torch.uint8)  # 200 inside, 100 outside
    assert torch.equal(visual_hull(cams, as_uint8, None, CONFIG).coords, hull.coords)


def _disjoint_masks() -> Tensor:
    masks = torch.zeros(4, W, W, dtype=torch.bool)
    for view, (row, col) in enumerate([(2, 2), (2, 40), (40, 2), (40, 40)]):
        masks[view, row : row + 5, col : col + 5] = True  # a small blob in a different corner per view
    return masks


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("empty_view", ["mask of view 2 is empty"]),
        ("one_view", ["at least 2 views, got 1"]),
        ("mask_size", ["[4, 48, 48]", "got [4, 48, 40]"]),
        ("mask_dtype", ["bool or uint8", "torch.float32"]),
        ("image_size", ["images must be", "[4, 48, 48, 3]"]),
        ("agree", ["agree = 5 exceeds", "4"]),
        ("disagree", ["hull is empty", "do not agree", "view 0:", "view 3:"]),
        ("parallel", ["(nearly) parallel"]),
    ],
)
def test_errors_name_the_cause(case, words):
    cams, images, config = _cameras(4), None, CONFIG
    masks = _masks(cams, "sphere")
    if case == "empty_view":
        masks[2] = False
    elif case == "one_view":
        cams, masks = cams[0], masks[:1]
    elif case == "mask_size":
        masks = masks[..., :40]
    elif case == "mask_dtype":
        masks = masks.float()
    elif case == "image_size":
        images = torch.zeros(4, W, W, 4)
    elif case == "agree":
        config = HullConfig(agree=5)
    elif case == "disagree":
        masks = _disjoint_masks()
    elif case == "parallel":
        eyes = torch.tensor([[0.0, -4.0, 0.0], [0.5, -4.0, 0.0]])
        cams = Cameras(look_at_viewmats(eyes, eyes + torch.tensor([0.0, 1.0, 0.0])), cams.Ks[:2], W, W)
        masks = masks[:2]
    with pytest.raises(ValueError) as err:
        visual_hull(cams, masks, images, config)
    for word in words:
        assert word in str(err.value)


def test_config_ranges_are_checked():
    for bad in ({"resolution": 0}, {"coarse_resolution": 1}, {"agree": 0}):
        with pytest.raises(ValueError, match="HullConfig"):
            HullConfig(**bad)


def test_ball_test_is_conservative():
    # Wide views (the projection of a ball stretches most off-axis) of sparse random masks,
    # and balls anywhere, some reaching behind a camera: whenever a point of a ball passes
    # the exact test in a view, the ball passes the coarse test there.
    cams = _cameras(3, fovs=[120.0] * 3)
    gen = torch.Generator().manual_seed(2)
    views = _views(cams, torch.rand(3, W, W, generator=gen) < 0.02)
    centres = 10 * torch.rand(400, 3, generator=gen, dtype=torch.float64) - 5
    dirs = torch.nn.functional.normalize(torch.randn(400, 64, 3, generator=gen, dtype=torch.float64), dim=-1)
    radius = 0.4
    points = centres[:, None] + radius * dirs * (1 - 0.1 * torch.rand(400, 64, 1, generator=gen, dtype=torch.float64))
    exact = _hits(views, points.reshape(-1, 3), 0.0).reshape(3, 400, 64).any(-1)  # [V, balls]
    coarse = _hits(views, centres, radius)
    assert exact.sum() > 50 and (coarse & ~exact).any()
    assert not (exact & ~coarse).any()
