"""Densification strategies: edit counts as specified, optimizer state rows following their
parameters, the relocation formula on hand-worked values, and one real render's statistics."""

import math

import pytest
import torch

import sparse3d
from sparse3d.render.rasterize import RasterConfig, RasterMeta, rasterize_gaussians
from sparse3d.render.strategy import DefaultStrategy, MCMCStrategy
from sparse3d.render.strategy.ops import relocation_targets

NAMES = ("means", "scales", "quats", "opacities", "colors")


def make_params(n: int, seed: int = 0):
    """Parameters and one Adam per name, stepped once so that state exists; each row's
    exp_avg is set to its row index + 1 so tests can follow rows through edits."""
    g = torch.Generator().manual_seed(seed)
    params = {
        "means": torch.randn(n, 3, generator=g),
        "scales": torch.full((n, 3), math.log(0.05)),
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.full((n,), 2.0),
        "colors": torch.rand(n, 3, generator=g),
    }
    params = {k: torch.nn.Parameter(v) for k, v in params.items()}
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    for p in params.values():
        p.grad = torch.ones_like(p)
    for opt in optimizers.values():
        opt.step()
    for name, p in params.items():
        marker = torch.arange(1, n + 1, dtype=torch.float32).reshape(n, *([1] * (p.dim() - 1)))
        optimizers[name].state[p]["exp_avg"].copy_(marker.expand_as(p))
    return params, optimizers


def markers(params, optimizers, name="colors"):
    """The row markers (exp_avg of the first column) of one parameter."""
    state = optimizers[name].state[params[name]]["exp_avg"]
    return state.reshape(state.shape[0], -1)[:, 0]


def fake_meta(n: int, grad_rows, width=100, height=100) -> RasterMeta:
    """A one-camera render in which every Gaussian is visible and only ``grad_rows`` have an
    image-plane gradient (0.001 px -> 0.05 in NDC, far above grow_grad2d)."""
    means2d = torch.zeros(1, n, 2, requires_grad=True)
    means2d.grad = torch.zeros(1, n, 2)
    means2d.grad[0, grad_rows, 0] = 1e-3
    radii = torch.full((1, n, 2), 3, dtype=torch.int32)
    return RasterMeta(means2d, radii, torch.ones(1, n), torch.zeros(1, n, 3), torch.ones(1, n), width, height, 1)


def test_default_clones_small_splits_large_prunes_transparent():
    params, optimizers = make_params(10)
    with torch.no_grad():
        params["scales"][0:3] = math.log(0.001)  # small -> cloned
        params["scales"][3:5] = math.log(0.5)  # large -> split
        params["opacities"][5] = torch.logit(torch.tensor(0.001))  # transparent -> pruned
    parents = {k: v.detach().clone() for k, v in params.items()}
    strategy = DefaultStrategy(refine_start_iter=0, refine_every=1, reset_every=1000)
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=1.0)
    report = strategy.step_post_backward(params, optimizers, state, step=1, meta=fake_meta(10, [0, 1, 2, 3, 4]))

    assert report == {"cloned": 3, "split": 2, "pruned": 1}
    assert params["means"].shape[0] == 10 + 3 + 2 - 1
    strategy.check_sanity(params, optimizers)  # optimizers hold the new tensors
    for name in NAMES:
        assert optimizers[name].state[params[name]]["exp_avg"].shape == params[name].shape
    # Order after the edits: the 7 untouched originals, the 3 clones, then 2 x 2 children.
    kept = [0, 1, 2, 6, 7, 8, 9]
    torch.testing.assert_close(markers(params, optimizers), torch.tensor([r + 1.0 for r in kept] + [0.0] * 7))
    torch.testing.assert_close(params["means"][:7], parents["means"][kept])
    torch.testing.assert_close(params["colors"][7:10], parents["colors"][0:3])
    children = params["scales"][10:]
    torch.testing.assert_close(children, torch.full_like(children, math.log(0.5 / 1.6)))
    torch.testing.assert_close(params["colors"][10:], parents["colors"][[3, 4, 3, 4]])
    assert ((params["means"][10:] - parents["means"][[3, 4, 3, 4]]).norm(dim=-1) < 0.5 * 4).all()
    assert optimizers["means"].state[params["means"]]["step"] == 1  # scalar state kept


def test_default_resets_opacity_and_its_optimizer_state():
    params, optimizers = make_params(6)
    strategy = DefaultStrategy(refine_start_iter=0, refine_every=1000, reset_every=300)
    state = strategy.initialize_state()
    strategy.step_post_backward(params, optimizers, state, step=300, meta=fake_meta(6, []))
    assert torch.sigmoid(params["opacities"]).max() <= 2 * strategy.prune_opa + 1e-6
    assert optimizers["opacities"].state[params["opacities"]]["exp_avg"].eq(0).all()
    assert markers(params, optimizers, "means").tolist() == [1, 2, 3, 4, 5, 6]


def test_default_prunes_huge_gaussians_after_the_first_reset():
    params, optimizers = make_params(5)
    with torch.no_grad():
        params["scales"][2] = math.log(0.3)  # > prune_scale3d, but below grow threshold's statistic
    strategy = DefaultStrategy(refine_start_iter=0, refine_every=10, reset_every=100)
    state = strategy.initialize_state()
    assert strategy.step_post_backward(params, optimizers, state, step=50, meta=fake_meta(5, []))["pruned"] == 0
    assert strategy.step_post_backward(params, optimizers, state, step=110, meta=fake_meta(5, []))["pruned"] == 1
    assert markers(params, optimizers).tolist() == [1, 2, 4, 5]


@pytest.mark.skipif(not sparse3d.HAS_NATIVE, reason="absgrad needs sparse3d._C")
@pytest.mark.parametrize("absgrad", [False, True])
def test_default_statistics_from_a_real_render(absgrad):
    params, optimizers = make_params(50, seed=3)
    with torch.no_grad():
        params["means"][:5, 2] = -10.0  # behind the camera: never visible
    viewmats = torch.eye(4)[None].clone()
    viewmats[0, 2, 3] = 5.0
    Ks = torch.tensor([[[60.0, 0.0, 32.0], [0.0, 60.0, 32.0], [0.0, 0.0, 1.0]]])
    strategy = DefaultStrategy(refine_start_iter=10, absgrad=absgrad)
    state = strategy.initialize_state()
    for step in range(2):
        img, _, meta = rasterize_gaussians(
            params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]),
            params["colors"], viewmats, Ks, 64, 64, RasterConfig(absgrad=absgrad),
        )
        strategy.step_pre_backward(params, optimizers, state, step, meta)
        img.square().sum().backward()
        strategy.step_post_backward(params, optimizers, state, step, meta)
    visible = (meta.radii > 0).all(-1)[0]
    assert state.count.tolist() == (2.0 * visible).tolist()
    assert (state.grad2d[~visible] == 0).all()
    assert (state.grad2d[visible] > 0).float().mean() > 0.9  # a few are hidden behind others
    grads = meta.means2d.absgrad if absgrad else meta.means2d.grad
    one_step = (grads[0] * torch.tensor([32.0, 32.0])).norm(dim=-1)
    assert (state.grad2d >= one_step - 1e-6).all()


def test_relocation_targets_match_the_hand_worked_formula():
    o = torch.tensor([0.3, 0.6, 0.9])
    s = torch.tensor([[1.0, 2.0, 3.0]] * 3)
    new_o, new_s = relocation_targets(o, s, torch.tensor([1, 2, 3]))
    torch.testing.assert_close(new_o[0], o[0])  # one copy: unchanged
    torch.testing.assert_close(new_s[0], s[0])
    torch.testing.assert_close(1 - (1 - new_o[1:]) ** torch.tensor([2.0, 3.0]), o[1:])
    p = 1 - math.sqrt(1 - 0.6)  # n = 2: denominator o' + (o' - o'^2 / sqrt 2)
    torch.testing.assert_close(new_s[1], s[1] * 0.6 / (2 * p - p * p / math.sqrt(2)))
    q = 1 - (1 - 0.9) ** (1 / 3)  # n = 3 adds i = 3: q - 2 q^2 / sqrt 2 + q^3 / sqrt 3
    denom = q + (q - q * q / math.sqrt(2)) + (q - 2 * q * q / math.sqrt(2) + q**3 / math.sqrt(3))
    torch.testing.assert_close(new_s[2], s[2] * 0.9 / denom)


def test_mcmc_relocates_dead_gaussians_onto_live_ones():
    torch.manual_seed(0)
    params, optimizers = make_params(8)
    with torch.no_grad():
        params["opacities"][[1, 4]] = torch.logit(torch.tensor(0.001))
    before = {k: v.detach().clone() for k, v in params.items()}
    strategy = MCMCStrategy(refine_start_iter=0, refine_every=1, cap_max=8)
    report = strategy.step_post_backward(params, optimizers, strategy.initialize_state(), 1, None, lr=0.0)
    assert report == {"relocated": 2, "added": 0}
    assert params["means"].shape[0] == 8
    for dead in (1, 4):
        source = [r for r in range(8) if r not in (1, 4) and torch.equal(params["colors"][r], params["colors"][dead])]
        assert source, "each dead Gaussian becomes a copy of a live one"
        torch.testing.assert_close(params["means"][dead], before["means"][source[0]])
        assert torch.sigmoid(params["opacities"][dead]) < torch.sigmoid(before["opacities"][source[0]])
    zeroed = markers(params, optimizers) == 0
    assert zeroed[[1, 4]].all() and 3 <= zeroed.sum() <= 4  # dead rows plus their 1-2 sources
    untouched = ~zeroed
    torch.testing.assert_close(params["means"][untouched], before["means"][untouched])


def test_mcmc_adds_five_percent_up_to_the_cap():
    torch.manual_seed(1)
    params, optimizers = make_params(40)
    strategy = MCMCStrategy(refine_start_iter=0, refine_every=1, cap_max=41)
    state = strategy.initialize_state()
    assert strategy.step_post_backward(params, optimizers, state, 1, None, lr=0.0)["added"] == 1
    assert strategy.step_post_backward(params, optimizers, state, 2, None, lr=0.0)["added"] == 0
    strategy = MCMCStrategy(refine_start_iter=0, refine_every=1)
    assert strategy.step_post_backward(params, optimizers, state, 1, None, lr=0.0)["added"] == 2  # 1.05 * 41
    assert params["means"].shape[0] == 43
    assert markers(params, optimizers)[-2:].eq(0).all()
    strategy.check_sanity(params, optimizers)


def test_mcmc_noise_moves_only_transparent_gaussians():
    torch.manual_seed(2)
    params, optimizers = make_params(6)
    with torch.no_grad():
        params["opacities"][:3] = torch.logit(torch.tensor(0.001))
        params["opacities"][3:] = torch.logit(torch.tensor(0.9))
    before = params["means"].detach().clone()
    strategy = MCMCStrategy()
    strategy.step_post_backward(params, optimizers, strategy.initialize_state(), 1, None, lr=1e-4)
    moved = (params["means"] - before).norm(dim=-1)
    assert (moved[:3] > 1e-4).all()
    assert (moved[3:] < 1e-12).all()


def test_check_sanity_names_the_problem():
    params, optimizers = make_params(4)
    del optimizers["quats"]
    with pytest.raises(ValueError, match="no optimizer for params\\['quats'\\]"):
        DefaultStrategy().check_sanity(params, optimizers)
    params, optimizers = make_params(4)
    params["colors"] = torch.nn.Parameter(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="colors.*3 rows"):
        MCMCStrategy().check_sanity(params, optimizers)


def test_split_samples_children_inside_flat_gaussians():
    # A Gaussian flat along its local z (scale 1e-9, float32) has a covariance that is not
    # numerically positive-definite; its children must still be sampled, in its plane.
    from sparse3d.geometry.rotations import rotmats_from_quats
    from sparse3d.render.strategy.ops import split

    params, optimizers = make_params(4)
    with torch.no_grad():
        params["scales"][:, 2] = math.log(1e-9)
    parents_means = params["means"].detach().clone()
    normals = rotmats_from_quats(params["quats"].detach())[:, :, 2]  # [4, 3] local z in world
    torch.manual_seed(0)
    split(params, optimizers, torch.tensor([True, False, True, True]))
    children = params["means"].detach()[1:].reshape(2, 3, 3)  # the kept one first, then 2 x 3 children
    offsets = children - parents_means[[0, 2, 3]][None]
    assert torch.isfinite(children).all()
    assert (offsets * normals[[0, 2, 3]][None]).sum(-1).abs().max() < 1e-6  # no offset along the flat axis
    assert offsets.norm(dim=-1).min() > 1e-4  # but real offsets within the plane (scale 0.05)
