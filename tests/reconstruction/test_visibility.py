"""Visibility of a view's surface from other views, checked against analytic spheres, and
the split of a render's error into outside / seen / unseen regions."""

import math

import pytest
import torch
import torch.nn.functional as F

from sparse3d.data.dataset import MultiViewDataset
from sparse3d.geometry.cameras import Cameras, intrinsics_from_fov, look_at_viewmats
from sparse3d.reconstruction.visibility import (
    error_shares,
    heldout_error_shares,
    seen_by_views,
)

ORIGIN = (0.0, 0.0, 0.0)
UNIT_SPHERE = [(ORIGIN, 1.0)]


def cameras_at(eyes: torch.Tensor, look_at: tuple[float, float, float], size: int, fov: float = 40.0) -> Cameras:
    """Cameras at ``eyes`` [C, 3] looking at the point ``look_at``, square ``size`` images."""
    eyes = torch.as_tensor(eyes, dtype=torch.float64)
    targets = torch.tensor(look_at, dtype=torch.float64).expand_as(eyes)
    K = intrinsics_from_fov(fov, size, size)
    return Cameras(look_at_viewmats(eyes, targets), K.expand(len(eyes), 3, 3).clone(), size, size)


def ring(count: int, distance: float = 4.0, height: float = 1.2, phase: float = 0.2) -> torch.Tensor:
    """float64 [count, 3] eyes evenly spaced in azimuth around the z axis."""
    az = torch.arange(count, dtype=torch.float64) * 2 * math.pi / count + phase
    radius = math.sqrt(distance**2 - height**2)
    return torch.stack([radius * az.cos(), radius * az.sin(), torch.full_like(az, height)], -1)


def pixel_rays(cameras: Cameras, i: int) -> torch.Tensor:
    """float64 [H, W, 3] world-frame directions through the pixel centres of camera i,
    scaled so their camera-frame z is 1 (a ray's parameter is then the depth)."""
    v, u = torch.meshgrid(torch.arange(cameras.height, dtype=torch.float64) + 0.5,
                          torch.arange(cameras.width, dtype=torch.float64) + 0.5, indexing="ij")
    rays = torch.stack([u, v, torch.ones_like(u)], -1) @ torch.linalg.inv(cameras.Ks[i].double()).T
    return rays @ cameras.viewmats[i, :3, :3].double()  # R^T d, row-wise


def sphere_depths(cameras: Cameras, spheres: list[tuple[tuple[float, float, float], float]]) -> torch.Tensor:
    """Exact camera-frame depths of the nearest of ``spheres`` (centre, radius) at every
    pixel centre by ray-sphere intersection: float32 [C, H, W], 0 where every ray misses."""
    out = []
    for i in range(len(cameras)):
        dirs, eye = pixel_rays(cameras, i), cameras.centers[i].double()
        nearest = torch.full(dirs.shape[:2], math.inf, dtype=torch.float64)
        for centre, radius in spheres:
            offset = eye - torch.tensor(centre, dtype=torch.float64)
            a, b = (dirs * dirs).sum(-1), dirs @ offset
            disc = b * b - a * (offset @ offset - radius**2)
            z = (-b - disc.clamp(min=0).sqrt()) / a
            nearest = torch.where((disc > 0) & (z > 0) & (z < nearest), z, nearest)
        out.append(torch.where(torch.isfinite(nearest), nearest, 0.0))
    return torch.stack(out).float()


def surface_points(cameras: Cameras, i: int, depth: torch.Tensor) -> torch.Tensor:
    """float64 [H, W, 3] world points at ``depth`` [H, W] along camera i's pixel rays."""
    return cameras.centers[i].double() + depth.double()[..., None] * pixel_rays(cameras, i)


def facing_any(points: torch.Tensor, eyes: torch.Tensor) -> torch.Tensor:
    """The analytic answer on the unit sphere at the origin: a point p is seen from eye c
    iff (c - p) . p > 0 (the convex sphere hides nothing else). bool [...] of points [..., 3]."""
    return (((eyes.double()[:, None, None] - points[None]) * points[None]).sum(-1) > 0).any(0)


def eroded(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """``mask`` [H, W] less every pixel within ``pixels`` (Chebyshev) of its outside."""
    k = 2 * pixels + 1
    return -F.max_pool2d(-mask.double()[None, None], k, 1, pixels)[0, 0] > 0


def test_a_source_sees_all_of_its_own_foreground():
    sources = cameras_at(ring(4), ORIGIN, 48)
    depths = sphere_depths(sources, UNIT_SPHERE)
    for i in range(len(sources)):
        seen = seen_by_views(sources[i], depths[i], sources, depths)
        assert seen.tolist() == (depths[i] > 0).tolist()  # all of the foreground, no background


def test_the_far_side_is_unseen():
    # Sources within +-10 deg of azimuth 0 see caps of half-angle acos(1/4) = 75.5 deg
    # around their directions; a target at azimuth 180 sees the cap around the opposite
    # direction: 180 - 10 > 2 x 75.5, so the caps share no point.
    az = torch.tensor([-10.0, 0.0, 10.0], dtype=torch.float64).deg2rad()
    source_eyes = 4 * torch.stack([az.cos(), az.sin(), torch.zeros_like(az)], -1)
    sources = cameras_at(source_eyes, ORIGIN, 64)
    target = cameras_at(torch.tensor([[-4.0, 0.0, 0.0]]), ORIGIN, 64)
    target_depth = sphere_depths(target, UNIT_SPHERE)[0]
    seen = seen_by_views(target, target_depth, sources, sphere_depths(sources, UNIT_SPHERE))
    assert (target_depth > 0).sum() > 1000
    assert not seen.any()


@pytest.mark.parametrize("target_azimuth_deg", [50.0, 100.0, 170.0, 230.0])
def test_intermediate_views_match_the_analytic_answer(target_azimuth_deg):
    size = 128
    source_eyes = ring(4)
    sources = cameras_at(source_eyes, ORIGIN, size)
    az = math.radians(target_azimuth_deg)
    # Below the sources' ring, so part of the target's view faces none of them.
    target = cameras_at(torch.tensor([[3.7 * math.cos(az), 3.7 * math.sin(az), -1.5]]), ORIGIN, size)
    target_depth = sphere_depths(target, UNIT_SPHERE)[0]
    foreground = target_depth > 0
    truth = facing_any(surface_points(target, 0, target_depth), source_eyes) & foreground
    seen = seen_by_views(target, target_depth, sources, sphere_depths(sources, UNIT_SPHERE))
    away = eroded(foreground, 2)
    assert 0.02 < 1 - truth[foreground].double().mean() < 0.5  # a real mix of seen and unseen
    assert (seen == truth)[away].double().mean() >= 0.95
    assert not (seen & ~foreground).any()
    # The disagreements are grazing: a point the test misses is seen by no source at
    # less than 80 deg from its normal (82 measured), and one it adds lies at most 2 deg
    # behind a source's limb (1 measured).
    points = surface_points(target, 0, target_depth)
    to_eyes = F.normalize(source_eyes.double()[:, None, None] - points[None], dim=-1)
    best_cos = (to_eyes * points[None]).sum(-1).amax(0)  # [H, W], the unit normal is p
    assert best_cos[truth & ~seen].max() < math.cos(math.radians(80))
    assert best_cos[seen & ~truth].min() > -math.sin(math.radians(2))


def test_occluded_points_are_unseen():
    # A small sphere hidden behind a big one from the source (the big one subtends
    # asin(1/6) = 9.6 deg, the small one at most 2 deg about the same axis).
    big, small = (ORIGIN, 1.0), ((-2.5, 0.0, 0.0), 0.3)
    source = cameras_at(torch.tensor([[6.0, 0.0, 0.0]]), ORIGIN, 64)
    target = cameras_at(torch.tensor([[-2.5, 3.0, 0.0]]), small[0], 64, fov=20.0)
    target_depth = sphere_depths(target, [big, small])[0]
    points = surface_points(target, 0, target_depth)
    on_small = (target_depth > 0) & ((points - torch.tensor(small[0]).double()).norm(dim=-1) < small[1] + 1e-4)
    facing_source = ((torch.tensor([6.0, 0.0, 0.0]).double() - points) * (points - torch.tensor(small[0]).double())).sum(-1) > 0
    assert (on_small & facing_source).sum() > 50  # without the big sphere, these would be seen

    seen = seen_by_views(target, target_depth, source, sphere_depths(source, [big, small]))
    assert not seen[on_small].any()

    # The control: the same source with the small sphere alone sees its facing side.
    seen_alone = seen_by_views(target, target_depth, source, sphere_depths(source, [small]))
    assert (seen_alone == (on_small & facing_source))[eroded(on_small, 2)].double().mean() > 0.95


def test_background_depth_may_be_zero_or_inf():
    sources = cameras_at(ring(3), ORIGIN, 32)
    depths = sphere_depths(sources, UNIT_SPHERE)
    with_inf = torch.where(depths > 0, depths, torch.inf)
    for i in range(3):
        assert torch.equal(seen_by_views(sources[i], with_inf[i], sources, with_inf),
                           seen_by_views(sources[i], depths[i], sources, depths))


def test_seen_by_views_rejects_bad_input():
    sources = cameras_at(ring(2), ORIGIN, 16)
    depths = sphere_depths(sources, UNIT_SPHERE)
    with pytest.raises(ValueError, match="one camera"):
        seen_by_views(sources, depths[0], sources, depths)
    with pytest.raises(ValueError, match="target_depth must be"):
        seen_by_views(sources[0], depths[0, :8], sources, depths)
    with pytest.raises(ValueError, match="source_depths must be"):
        seen_by_views(sources[0], depths[0], sources, depths[:1])
    with pytest.raises(ValueError, match="tolerance"):
        seen_by_views(sources[0], depths[0], sources, depths, tolerance=0.0)


def hand_made_view() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 2 x 3 view: render, target [2, 3, 3], mask, seen [2, 3], with squared errors
    (summed over channels) outside 0.25 + 0.5, seen 0.1875, unseen 1 + 0 + 0.0625."""
    mask = torch.tensor([[False, True, True], [True, True, False]])
    seen = torch.tensor([[True, True, False], [False, False, False]])  # (0, 0) is outside: ignored
    target = torch.full((2, 3, 3), 0.5)
    render = target.clone()
    render[0, 0, 0] = 1.0  # outside: 0.25
    render[1, 2, 1:] = 0.0  # outside: 0.5
    render[0, 1] = 0.75  # seen: 3 x 0.0625
    render[0, 2, 0] = 1.5  # unseen: 1 (a render need not be clamped for the arithmetic)
    render[1, 1, 0] = 0.25  # unseen: 0.0625
    return render, target, mask, seen


def test_error_shares_on_a_hand_made_view():
    out = error_shares(*hand_made_view())
    values = 2 * 3 * 3
    assert out["share_outside"] == 0.75 / 2.0
    assert out["share_seen"] == 0.1875 / 2.0
    assert out["share_unseen"] == 1.0625 / 2.0
    assert (out["pixels_outside"], out["pixels_seen"], out["pixels_unseen"]) == (2, 1, 3)
    assert out["psnr"] == pytest.approx(10 * math.log10(values / 2.0), abs=1e-12)
    assert out["psnr_without_outside"] == pytest.approx(10 * math.log10(values / 1.25), abs=1e-12)
    assert out["psnr_without_seen"] == pytest.approx(10 * math.log10(values / 1.8125), abs=1e-12)
    assert out["psnr_without_unseen"] == pytest.approx(10 * math.log10(values / 0.9375), abs=1e-12)


def test_error_shares_of_an_exact_render():
    _, target, mask, seen = hand_made_view()
    out = error_shares(target, target, mask, seen)
    assert all(math.isnan(out[f"share_{r}"]) for r in ("outside", "seen", "unseen"))
    assert out["psnr"] == out["psnr_without_seen"] == math.inf


def test_error_shares_rejects_bad_input():
    render, target, mask, seen = hand_made_view()
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        error_shares(render[:1], target, mask, seen)
    with pytest.raises(ValueError, match="bool"):
        error_shares(render, target, mask.float(), seen)


GREY = 128


class PaintedSphere:
    """Renders the unit sphere flat grey over white, exactly as the data below stores it,
    darkened by ``inside_error`` on the sphere and with a black block painted outside it."""

    def __init__(self, inside_error: float, floater: bool):
        self.inside_error, self.floater = inside_error, floater

    def get_outputs_for_camera(self, camera: Cameras) -> dict[str, torch.Tensor]:
        hit = sphere_depths(camera, UNIT_SPHERE)[0] > 0
        rgb = torch.where(hit[..., None], GREY / 255 - self.inside_error, 1.0).expand(*hit.shape, 3).clone()
        if self.floater:
            rgb[:4, :4] = 0.0  # a corner the sphere does not reach
        return {"rgb": rgb}


def sphere_data(size: int = 32) -> MultiViewDataset:
    """8 ring views of the unit sphere, flat grey: views 0 and 1 train, the rest held out."""
    cameras = cameras_at(ring(8, height=0.0), ORIGIN, size)
    depths = sphere_depths(cameras, UNIT_SPHERE)
    masks = depths > 0
    images = torch.where(masks[..., None], GREY, 255).expand(8, size, size, 3).to(torch.uint8).contiguous()
    return MultiViewDataset(
        cameras=cameras, images=images, image_names=[f"{i:03d}.png" for i in range(8)],
        train_indices=torch.tensor([0, 1]), test_indices=torch.arange(2, 8), masks=masks, depths=depths,
    )


def test_heldout_error_shares_floaters_only():
    data = sphere_data()
    out = heldout_error_shares(PaintedSphere(inside_error=0.0, floater=True), data)
    assert out["share_outside"] == 1.0 and out["share_seen"] == out["share_unseen"] == 0.0
    assert out["psnr_without_outside"] == math.inf
    assert len(out["views"]) == 6 and out["views"][0]["name"] == "002.png"
    values = 6 * 32 * 32 * 3
    assert out["psnr"] == pytest.approx(-10 * math.log10(16 * 3 / (32 * 32 * 3)))  # 16 black pixels per view
    assert out["pixels_outside"] + out["pixels_seen"] + out["pixels_unseen"] == values // 3


def test_heldout_error_shares_splits_uniform_error_by_pixel_counts():
    data = sphere_data()
    out = heldout_error_shares(PaintedSphere(inside_error=0.1, floater=False), data)
    inside = out["pixels_seen"] + out["pixels_unseen"]
    assert out["share_outside"] == 0.0
    assert out["share_seen"] == pytest.approx(out["pixels_seen"] / inside, rel=1e-12)
    assert out["share_unseen"] == pytest.approx(out["pixels_unseen"] / inside, rel=1e-12)
    # Views 0 and 1 are 45 deg apart: the held-out views opposite them are mostly unseen.
    assert 0.2 < out["share_unseen"] < 0.8
    seen = [seen_by_views(data.cameras[i], data.depths[i], data.cameras[:2], data.depths[:2]) for i in range(2, 8)]
    assert out["pixels_seen"] == sum(int(s.sum()) for s in seen)


def test_heldout_error_shares_needs_depths():
    data = sphere_data()
    no_depths = MultiViewDataset(data.cameras, data.images, data.image_names, data.train_indices,
                                 data.test_indices, masks=data.masks)
    with pytest.raises(ValueError, match="no depth maps"):
        heldout_error_shares(PaintedSphere(0.0, False), no_depths)
