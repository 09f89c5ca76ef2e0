"""GaussianObject's novel-view rig, gap sampler and distance weight (reference §7.1, §7.2)."""

import math

import pytest
import torch

from sparse3d.geometry.cameras import Cameras, intrinsics_from_fov, look_at_viewmats
from sparse3d.geometry.rotations import rotmats_from_quats
from sparse3d.reconstruction.novel_views import (
    distance_weights,
    novel_view_rig,
    rig_cameras,
    sample_angles_between_views,
    sample_angles_uniform,
)

K = intrinsics_from_fov(50.0, 64, 64)
TWO_PI = 2 * math.pi


def _cameras(eyes: torch.Tensor, targets: torch.Tensor | None = None, up=(0.0, 0.0, 1.0)) -> Cameras:
    targets = torch.zeros_like(eyes) if targets is None else targets
    return Cameras(look_at_viewmats(eyes, targets, up), K.expand(len(eyes), 3, 3), 64, 64)


def _ring(azimuths_deg: list[float], elevation_deg: float = 20.0, distance: float = 4.0, up=(0.0, 0.0, 1.0)) -> Cameras:
    az, el = torch.tensor(azimuths_deg, dtype=torch.float64).deg2rad(), math.radians(elevation_deg)
    eyes = distance * torch.stack([math.cos(el) * az.cos(), math.cos(el) * az.sin(),
                                   torch.full_like(az, math.sin(el))], -1)
    return _cameras(eyes, up=up)


def _similar(cams: Cameras, rot: torch.Tensor, scale: float, shift: torch.Tensor) -> Cameras:
    """The same rig seen in a world moved by x -> scale * rot @ x + shift."""
    rots = cams.viewmats[:, :3, :3].double() @ rot.T  # [C, 3, 3]
    centers = scale * cams.centers.double() @ rot.T + shift
    viewmats = torch.zeros(len(cams), 4, 4, dtype=torch.float64)
    viewmats[:, :3, :3], viewmats[:, :3, 3], viewmats[:, 3, 3] = rots, -(rots @ centers[..., None])[..., 0], 1.0
    return Cameras(viewmats.float(), cams.Ks, cams.width, cams.height)


def _circular_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d = torch.remainder(a - b, TWO_PI)
    return torch.minimum(d, TWO_PI - d)


def _gap_of(angles: torch.Tensor, thetas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each angle, the gap of sorted ``thetas`` it falls in: (index, start, width)."""
    starts = torch.remainder(thetas, TWO_PI).sort().values  # [T]
    widths = torch.remainder(starts.roll(-1) - starts, TWO_PI)  # [T], the last wraps round
    offset = torch.remainder(angles[:, None] - starts[None], TWO_PI)  # [M, T]
    inside = offset < widths[None]
    assert (inside.sum(1) == 1).all()
    index = inside.int().argmax(1)
    return index, starts[index], widths[index]


def test_ring_focus_and_look_at():
    # The inputs are rolled (their mean up leans towards +x); novel views use the ring's axis.
    rig = novel_view_rig(_ring([0, 90, 180, 270], up=(0.3, 0.0, 1.0)))
    torch.testing.assert_close(rig.focus, torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(rig.up, torch.tensor([0.0, 0, 1], dtype=torch.float64), atol=1e-6, rtol=0)
    gaps = torch.remainder(rig.thetas.sort().values.diff(), TWO_PI)
    torch.testing.assert_close(gaps, torch.full((3,), math.pi / 2, dtype=torch.float64), atol=1e-6, rtol=0)
    novel = rig_cameras(rig, sample_angles_between_views(rig, 16, torch.Generator().manual_seed(0)), 64, 64, K)
    torch.testing.assert_close(novel.project(torch.zeros(1, 3)), torch.full((16, 1, 2), 32.0), atol=1e-3, rtol=0)
    assert (novel.to_camera(torch.zeros(1, 3))[..., 2] > 0).all()  # in front, not behind
    torch.testing.assert_close(novel.Ks, K.expand(16, 3, 3))


@pytest.mark.parametrize("azimuths", [[0, 90, 180, 270], [0, 30, 180, 270]])
def test_samples_stay_in_the_gaps(azimuths):
    rig = novel_view_rig(_ring(azimuths))
    spread = 0.8
    angles = sample_angles_between_views(rig, 800, torch.Generator().manual_seed(1), spread)
    assert angles.dtype == torch.float64 and ((angles >= 0) & (angles < TWO_PI)).all()
    index, start, width = _gap_of(angles, rig.thetas)
    # The mid-gap rule, per gap: within spread x half the gap of its middle (float slack).
    assert (_circular_distance(angles, start + width / 2) <= spread * width / 2 + 1e-9).all()
    # Never within the (1 - spread) margin of an input view.
    margin = _circular_distance(angles[:, None], rig.thetas[None]).amin(1)
    assert (margin >= (1 - spread) * width / 2 - 1e-9).all()
    # Every gap is used, each start view (k mod 4, in angle order) goes to both its gaps at
    # random, and the jitter spans its range (not only the midpoint).
    assert torch.bincount(index, minlength=4).min() > 100
    for k in range(4):
        used = index[k::4].unique()
        assert len(used) == 2 and (used[1] - used[0]) in (1, 3)
    assert (_circular_distance(angles, start + width / 2) / (width / 2)).max() > 0.75


def test_uniform_angles_cover_the_circle():
    angles = sample_angles_uniform(4000, torch.Generator().manual_seed(2))
    assert angles.dtype == torch.float64 and ((angles >= 0) & (angles < TWO_PI)).all()
    assert torch.histc(angles, bins=8, min=0, max=TWO_PI).min() > 400


@pytest.mark.parametrize("shape", ["ring", "ellipse"])
def test_training_angles_reproduce_training_cameras(shape):
    if shape == "ring":
        cams = _ring([0, 90, 180, 270], elevation_deg=35.0, distance=3.0)
    else:  # 8 cameras on a 2:1 ellipse at height 1; at 45 deg the polar angle is not the parameter
        t = torch.arange(8, dtype=torch.float64) * math.pi / 4
        cams = _cameras(torch.stack([2 * t.cos(), t.sin(), torch.ones(8, dtype=torch.float64)], -1))
    rig = novel_view_rig(cams)
    novel = rig_cameras(rig, rig.thetas, 64, 64, K)
    torch.testing.assert_close(novel.centers, cams.centers, atol=1e-5, rtol=0)
    torch.testing.assert_close(novel.viewmats, cams.viewmats, atol=1e-5, rtol=0)


@pytest.mark.parametrize("azimuths", [[0, 90, 180, 270], [0, 30, 180, 270], [10, 100]])
def test_similarity_invariance(azimuths):
    cams = _ring(azimuths)
    quat = torch.nn.functional.normalize(torch.tensor([0.8, 0.3, -0.5, 0.2], dtype=torch.float64), dim=0)
    rot = rotmats_from_quats(quat)  # a generic rotation, no axis left in place
    scale, shift = 2.5, torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    moved = _similar(cams, rot, scale, shift)
    rig, rig_moved = novel_view_rig(cams), novel_view_rig(moved)

    angles = sample_angles_between_views(rig, 12, torch.Generator().manual_seed(3))
    angles_moved = sample_angles_between_views(rig_moved, 12, torch.Generator().manual_seed(3))
    torch.testing.assert_close(angles_moved, angles, atol=1e-5, rtol=0)
    novel, novel_moved = rig_cameras(rig, angles, 64, 64, K), rig_cameras(rig_moved, angles_moved, 64, 64, K)
    expected = scale * novel.centers.double() @ rot.T + shift
    torch.testing.assert_close(novel_moved.centers.double(), expected, atol=1e-4 * scale, rtol=0)
    torch.testing.assert_close(novel_moved.viewmats[:, :3, :3].double(),
                               novel.viewmats[:, :3, :3].double() @ rot.T, atol=1e-5, rtol=0)
    torch.testing.assert_close(distance_weights(novel_moved.centers, moved.centers),
                               distance_weights(novel.centers, cams.centers), atol=1e-5, rtol=0)


def test_distance_weights_on_a_unit_square():
    square = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=torch.float64)
    # Sorted distances of each corner: 0, 1, 1, sqrt(2); index 2 is 1, so D_max = 1.2.
    novel = torch.tensor([[0.0, 1, 0], [0.3, 0, 0], [0, 0, 0.15], [1.5, 1, 0], [0.5, 0.5, 0], [5, 5, 5]],
                         dtype=torch.float64)
    expected = torch.tensor([0.0, 0.6 / 1.2, 0.3 / 1.2, 1.0 / 1.2, 1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(distance_weights(novel, square), expected, atol=1e-12, rtol=0)
    assert distance_weights(novel.float(), square).dtype == torch.float32
    # A 2 x 1 rectangle tells index 2 from index 1: sorted distances 0, 1, 2, sqrt(5), D_max = 2.4.
    rectangle = torch.tensor([[0.0, 0, 0], [2, 0, 0], [2, 1, 0], [0, 1, 0]], dtype=torch.float64)
    novel = torch.tensor([[2.0, 1, 0], [0.3, 0, 0], [1, 0, 0], [0, 0, 1.2], [1, 0.5, 9]], dtype=torch.float64)
    expected = torch.tensor([0.0, 0.25, 2 / 2.4, 1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(distance_weights(novel, rectangle), expected, atol=1e-12, rtol=0)
    # T = 2 has no 3rd-nearest camera: the other one (distance 2) sets D_max = 2.4.
    pair = torch.tensor([[0.0, 0, 0], [2, 0, 0]])
    torch.testing.assert_close(distance_weights(torch.tensor([[0.6, 0, 0], [1, 0, 0]]), pair),
                               torch.tensor([0.5, 2 / 2.4]))


def test_same_seed_same_cameras():
    rig = novel_view_rig(_ring([0, 30, 180, 270]))

    def draw(seed):
        gen = torch.Generator().manual_seed(seed)
        angles = torch.cat([sample_angles_between_views(rig, 5, gen), sample_angles_uniform(3, gen)])
        return rig_cameras(rig, angles, 64, 64, K).viewmats

    assert torch.equal(draw(7), draw(7))
    assert not torch.allclose(draw(7), draw(8))


def test_errors():
    ring = _ring([0, 90, 180, 270])
    with pytest.raises(ValueError, match="at least 2 training cameras, got 1"):
        novel_view_rig(ring[0])
    eyes = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="parallel"):
        novel_view_rig(_cameras(eyes, eyes + torch.tensor([0.0, 1, 0])))
    with pytest.raises(ValueError, match="span no ellipse"):
        novel_view_rig(_ring([0, 180]))
    with pytest.raises(ValueError, match=r"K must be \[3, 3\]"):
        rig_cameras(novel_view_rig(ring), torch.zeros(2), 64, 64, K[None])
    with pytest.raises(ValueError, match="at least 2 training cameras, got 1"):
        distance_weights(torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="coincide"):
        distance_weights(torch.zeros(1, 3), torch.zeros(3, 3))
