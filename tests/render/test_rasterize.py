"""rasterize_gaussians: the native CPU backend against the pure-torch reference, analytic
values, float64 gradient checks, thread-count determinism and input validation."""

import math

import pytest
import torch

import sparse3d
from sparse3d.render.gaussians.composite import (
    rasterize_to_pixels,
    rasterize_to_pixels_ref,
)
from sparse3d.render.gaussians.projection import (
    project_gaussians,
    project_gaussians_ref,
)
from sparse3d.render.gaussians.sh import sh_bases
from sparse3d.render.gaussians.tiles import bin_gaussians, bin_gaussians_ref
from sparse3d.render.rasterize import RasterConfig, rasterize_gaussians

needs_native = pytest.mark.skipif(not sparse3d.HAS_NATIVE, reason="sparse3d._C is not built")
PARAMS = ("means", "quats", "scales", "opacities", "colors")


def look_at_viewmats(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Two cameras 4 units from the origin, the second turned 0.3 rad about y: viewmats, Ks."""
    viewmats = torch.eye(4, dtype=dtype).repeat(2, 1, 1)
    viewmats[:, 2, 3] = 4.0
    c, s = math.cos(0.3), math.sin(0.3)
    viewmats[1, :3, :3] = torch.tensor([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]], dtype=dtype)
    Ks = torch.tensor([[36.0, 0.0, 20.0], [0.0, 36.0, 16.0], [0.0, 0.0, 1.0]], dtype=dtype).repeat(2, 1, 1)
    return viewmats, Ks


def make_scene(n: int, seed: int, dtype=torch.float64, sh_degree: int | None = None) -> dict:
    """Random Gaussians around the origin, with every culling case mixed in: behind the
    camera, straddling the near plane, huge, tiny, off-screen and half on-screen."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=dtype)

    means = (rand(n, 3) * 2 - 1) * torch.tensor([2.0, 1.5, 2.0], dtype=dtype)
    scales = torch.exp(rand(n, 3) * 2 - 3.5)
    k = n // 12
    means[0:k, 2] = -6.0  # behind both cameras
    means[k : 2 * k, 2] = -3.995  # straddles the near plane of camera 0
    scales[2 * k : 3 * k] = 3.0  # huge: cover the whole image
    scales[3 * k : 4 * k] = 1e-4  # tiny: the eps2d filter sets their footprint
    means[4 * k : 5 * k, 0] = 30.0  # far off-screen
    means[5 * k : 6 * k, 0] = 2.7  # centre off-screen, footprint partly inside
    scene = {
        "means": means,
        "quats": torch.randn(n, 4, generator=g, dtype=dtype),
        "scales": scales,
        "opacities": rand(n) * 0.9 + 0.05,
        "colors": rand(n, 3) if sh_degree is None else torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g, dtype=dtype) * 0.4,
    }
    scene["viewmats"], scene["Ks"] = look_at_viewmats(dtype)
    return scene


def render(scene: dict, backend: str, width=40, height=32, sh_degree=None, backgrounds=None, **config):
    params = [scene[k].detach().clone().requires_grad_() for k in PARAMS]
    out = rasterize_gaussians(
        *params, scene["viewmats"], scene["Ks"], width, height,
        RasterConfig(backend=backend, **config), sh_degree=sh_degree, backgrounds=backgrounds,
    )
    return out, params


def grads_of(out, params, seed: int):
    """Gradients of a random linear function of the render and the alphas."""
    image, alphas, _ = out
    g = torch.Generator().manual_seed(seed)
    loss = (image * torch.randn(image.shape, generator=g, dtype=image.dtype)).sum()
    loss = loss + (alphas * torch.randn(alphas.shape, generator=g, dtype=alphas.dtype)).sum()
    return torch.autograd.grad(loss, params, allow_unused=True)  # depth-only modes ignore colours


@needs_native
@pytest.mark.parametrize(
    "case",
    [
        {"render_mode": "RGB"},
        {"render_mode": "RGB+ED", "rasterize_mode": "antialiased"},
        {"render_mode": "D", "eps2d": 0.1, "tile_size": 8},
        {"render_mode": "RGB+D", "sh_degree": 3, "radius_clip": 1.0},
        {"render_mode": "ED", "sh_degree": 1},
        {"render_mode": "RGB", "backgrounds": True, "near_plane": 0.5, "far_plane": 6.0},
    ],
    ids=["rgb", "rgb+ed-antialiased", "d-tile8", "rgb+d-sh3-clip", "ed-sh1", "rgb-bg-near-far"],
)
def test_native_matches_reference_forward_and_every_gradient(case):
    case = dict(case)
    sh_degree = case.pop("sh_degree", None)
    scene = make_scene(240, seed=len(str(case)), dtype=torch.float64, sh_degree=sh_degree)
    backgrounds = torch.tensor([[0.2, 0.5, 0.9], [1.0, 0.0, 0.3]], dtype=torch.float64) if case.pop("backgrounds", False) else None
    results = {}
    for backend in ("native", "torch"):
        out, params = render(scene, backend, sh_degree=sh_degree, backgrounds=backgrounds, **case)
        results[backend] = out, grads_of(out, params, seed=3)
    (img, alpha, meta), grads = results["native"]
    (img_ref, alpha_ref, _), grads_ref = results["torch"]
    assert meta.radii.gt(0).any(-1).sum() > 100, "the scene must keep most Gaussians visible"
    assert meta.radii.eq(0).all(-1).sum() > 20, "the scene must exercise culling"
    torch.testing.assert_close(img, img_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(alpha, alpha_ref, rtol=1e-10, atol=1e-10)
    for name, g, g_ref in zip(PARAMS, grads, grads_ref):
        if name == "colors" and case["render_mode"] in ("D", "ED"):
            assert g is None and g_ref is None
            continue
        assert g_ref.abs().max() > 0, name
        torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-8 * g_ref.abs().max().item(), msg=name)


@needs_native
def test_native_matches_reference_in_float32():
    scene = {k: v.float() for k, v in make_scene(600, seed=11).items()}
    out, params = render(scene, "native", width=64, height=48)
    out_ref, params_ref = render(scene, "torch", width=64, height=48)
    torch.testing.assert_close(out[0], out_ref[0], rtol=0, atol=2e-5)
    torch.testing.assert_close(out[1], out_ref[1], rtol=0, atol=2e-5)
    # The native backward rebuilds T by division (as gsplat does), which costs float32 a few
    # 1e-4 of the largest gradient here; float64 agrees to 1e-12 (test above).
    for name, g, g_ref in zip(PARAMS, grads_of(out, params, 0), grads_of(out_ref, params_ref, 0)):
        torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-3 * g_ref.abs().max().item(), msg=name)


def _composite_case(dtype=torch.float64):
    """Tiny compositing inputs: 6 Gaussians over a 12 x 10 image in 2 cameras, 8-px tiles."""
    g = torch.Generator().manual_seed(5)
    C, N = 2, 6
    means2d = torch.rand(C, N, 2, generator=g, dtype=dtype) * torch.tensor([12.0, 10.0], dtype=dtype)
    conics = torch.stack([0.3 + torch.rand(C, N, generator=g, dtype=dtype) * 0.2,
                          torch.rand(C, N, generator=g, dtype=dtype) * 0.1 - 0.05,
                          0.3 + torch.rand(C, N, generator=g, dtype=dtype) * 0.2], dim=-1)
    colors = torch.rand(C, N, 4, generator=g, dtype=dtype)
    opacities = torch.rand(C, N, generator=g, dtype=dtype) * 0.6 + 0.2
    depths = torch.rand(C, N, generator=g, dtype=dtype)
    radii = torch.full((C, N, 2), 8, dtype=torch.int32)
    return means2d, conics, colors, opacities, radii, depths


@needs_native
def test_native_compositing_gradcheck_float64():
    means2d, conics, colors, opacities, radii, depths = _composite_case()
    bins = bin_gaussians(means2d, radii, depths, 12, 10, 8)
    inputs = tuple(t.requires_grad_() for t in (means2d, conics, colors, opacities))
    assert torch.autograd.gradcheck(lambda *x: rasterize_to_pixels(*x, bins, 12, 10, 8), inputs)


def test_reference_compositing_gradcheck_float64():
    means2d, conics, colors, opacities, radii, depths = _composite_case()
    inputs = tuple(t.requires_grad_() for t in (means2d, conics, colors, opacities))
    # fast mode (random projections of the Jacobian): the reference is slow to re-run per input
    assert torch.autograd.gradcheck(
        lambda *x: rasterize_to_pixels_ref(*x, radii, depths, 12, 10, 8), inputs, fast_mode=True
    )


@needs_native
def test_end_to_end_gradcheck_float64_tiny_scene():
    scene = make_scene(4, seed=2)
    scene["means"] = torch.tensor([[0.1, 0.2, 0.0], [-0.4, 0.1, 0.5], [0.3, -0.3, 1.0], [0.0, 0.0, -0.5]], dtype=torch.float64)
    scene["scales"] = torch.full((4, 3), 0.15, dtype=torch.float64) + torch.arange(12, dtype=torch.float64).reshape(4, 3) * 0.01
    params = tuple(scene[k].clone().requires_grad_() for k in PARAMS)

    def fn(*p):
        img, alpha, _ = rasterize_gaussians(*p, scene["viewmats"], scene["Ks"], 12, 10,
                                            RasterConfig(backend="native", render_mode="RGB+ED", tile_size=8))
        return img, alpha

    assert torch.autograd.gradcheck(fn, params, atol=1e-5)


@needs_native
def test_op_registration_passes_opcheck():
    means2d, conics, colors, opacities, radii, depths = _composite_case(torch.float32)
    bins = bin_gaussians(means2d, radii, depths, 12, 10, 8)
    args = (means2d.requires_grad_(), conics.requires_grad_(), colors, opacities, bins.tile_offsets, bins.flatten_ids, 12, 10, 8)
    torch.library.opcheck(torch.ops.sparse3d.gaussian_rasterize.default, args)
    scene = {k: v.float() for k, v in make_scene(30, seed=1).items()}
    project_args = (scene["means"].requires_grad_(), scene["quats"].requires_grad_(), scene["scales"].requires_grad_(),
                    scene["viewmats"], scene["Ks"], 40, 32, 0.01, 1e10, 0.3, 0.0)
    torch.library.opcheck(torch.ops.sparse3d.gaussian_project.default, project_args)
    torch.library.opcheck(torch.ops.sparse3d.gaussian_bin.default, (means2d, radii, depths, 12, 10, 8))


@needs_native
def test_native_is_bitwise_identical_across_thread_counts():
    scene = {k: v.float() for k, v in make_scene(3000, seed=4).items()}
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out, params = render(scene, "native", width=96, height=64, sh_degree=None)
            results.append((out[0], out[1], *grads_of(out, params, 1), out[2].means2d.absgrad))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", ["torch", pytest.param("native", marks=needs_native)])
def test_single_gaussian_on_a_pixel_centre_has_the_analytic_value(backend):
    # A Gaussian on camera 0's axis projects to the principal point (20, 16), a pixel
    # corner; shifting it by half a pixel in x and y puts it on the centre of pixel (20, 16)
    # at depth 4, where sigma = 0 and the composited value is exactly opacity * colour.
    scene = make_scene(1, seed=0)
    scene["means"] = torch.tensor([[0.5 * 4 / 36, 0.5 * 4 / 36, 0.0]], dtype=torch.float64)
    scene["scales"] = torch.full((1, 3), 0.05, dtype=torch.float64)
    scene["opacities"] = torch.tensor([0.7], dtype=torch.float64)
    scene["colors"] = torch.tensor([[0.2, 0.4, 0.8]], dtype=torch.float64)
    (img, alpha, meta), _ = render(scene, backend, render_mode="RGB+ED")
    torch.testing.assert_close(meta.means2d[0, 0], torch.tensor([20.5, 16.5], dtype=torch.float64))
    torch.testing.assert_close(img[0, 16, 20], torch.tensor([0.14, 0.28, 0.56, 4.0], dtype=torch.float64))
    torch.testing.assert_close(alpha[0, 16, 20, 0], torch.tensor(0.7, dtype=torch.float64))


@needs_native
def test_absgrad_bounds_the_image_plane_gradient():
    scene = {k: v.float() for k, v in make_scene(300, seed=8).items()}
    out, _ = render(scene, "native", absgrad=True)
    meta = out[2]
    meta.means2d.retain_grad()
    out[0].square().sum().backward()
    grad, absgrad = meta.means2d.grad, meta.means2d.absgrad
    assert (absgrad >= grad.abs() - 1e-6).all()
    visible = meta.radii.gt(0).all(-1)
    assert absgrad[visible].sum() > grad[visible].abs().sum()
    assert absgrad[~visible].eq(0).all()


def test_reference_refuses_absgrad():
    scene = make_scene(10, seed=0)
    with pytest.raises(ValueError, match="absgrad"):
        render(scene, "torch", absgrad=True)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("means", torch.zeros(10, 2, dtype=torch.float64), "means must be"),
        ("quats", torch.zeros(9, 4, dtype=torch.float64), "quats must be"),
        ("opacities", torch.zeros(10, 1, dtype=torch.float64), "opacities must be"),
        ("colors", torch.zeros(3, 10, 3, dtype=torch.float64), "colors must be"),
        ("Ks", torch.zeros(2, 4, 4, dtype=torch.float64), "Ks must be"),
        ("scales", torch.zeros(10, 3, dtype=torch.float32), "scales is torch.float32"),
        ("viewmats", torch.zeros(2, 4, 4, dtype=torch.int64), "viewmats must be a float tensor"),
    ],
)
def test_bad_inputs_name_the_field(field, value, match):
    scene = make_scene(10, seed=0)
    scene[field] = value
    with pytest.raises((ValueError, TypeError), match=match):
        rasterize_gaussians(*(scene[k] for k in PARAMS), scene["viewmats"], scene["Ks"], 8, 8)


def test_bad_options_are_rejected():
    scene = make_scene(10, seed=0)
    with pytest.raises(ValueError, match="render_mode"):
        RasterConfig(render_mode="RGBD")
    with pytest.raises(ValueError, match="near_plane"):
        RasterConfig(near_plane=0.0)
    with pytest.raises(ValueError, match="sh_degree"):
        render(scene, "torch", sh_degree=4)
    with pytest.raises(ValueError, match="backgrounds"):
        render(scene, "torch", backgrounds=torch.zeros(2, 3, dtype=torch.float64), render_mode="D")


@pytest.mark.parametrize("backend", ["torch", pytest.param("native", marks=needs_native)])
def test_no_visible_gaussians_give_the_background(backend):
    scene = make_scene(12, seed=0)
    scene["means"][:, 2] = -10.0  # all behind the cameras
    bg = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], dtype=torch.float64)
    (img, alpha, _), _ = render(scene, backend, backgrounds=bg)
    assert alpha.eq(0).all()
    torch.testing.assert_close(img, bg[:, None, None].expand_as(img))


@pytest.mark.cuda
def test_cuda_tensors_go_to_gsplat_and_match_the_native_cpu_render():
    pytest.importorskip("gsplat")
    scene = {k: v.float() for k, v in make_scene(200, seed=1).items()}
    (img, alpha, _), _ = render(scene, "native")
    cuda = {k: v.cuda() for k, v in scene.items()}
    (img_gpu, alpha_gpu, _), _ = render(cuda, "auto")
    torch.testing.assert_close(img_gpu.cpu(), img, rtol=0, atol=1e-3)
    torch.testing.assert_close(alpha_gpu.cpu(), alpha, rtol=0, atol=1e-3)


@needs_native
def test_native_projection_matches_reference_outputs_and_gradients():
    scene = make_scene(300, seed=21)
    args = (scene["viewmats"], scene["Ks"], 40, 32, 0.01, 1e10, 0.3, 0.0)
    results = []
    for project in (project_gaussians, project_gaussians_ref):
        inputs = [scene[k].clone().requires_grad_() for k in ("means", "quats", "scales")]
        proj = project(*inputs, *args)
        visible = (proj.radii > 0).any(-1)
        g = torch.Generator().manual_seed(0)
        # Cotangents only on visible pairs: culled ones never reach the image.
        loss = sum(
            (out * torch.randn(out.shape, generator=g, dtype=out.dtype) * visible.reshape(*visible.shape, *[1] * (out.dim() - 2))).sum()
            for out in (proj.means2d, proj.conics, proj.depths, proj.compensations)
        )
        results.append((proj, torch.autograd.grad(loss, inputs)))
    (proj, grads), (ref, grads_ref) = results
    assert torch.equal(proj.radii, ref.radii)
    for field in ("means2d", "conics", "depths", "compensations"):
        torch.testing.assert_close(getattr(proj, field), getattr(ref, field), rtol=1e-10, atol=1e-10, msg=field)
    for name, g, g_ref in zip(("means", "quats", "scales"), grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-9, msg=name)


@needs_native
def test_camera_gradients_use_the_reference_projection():
    scene = make_scene(100, seed=6)
    viewmats = scene["viewmats"].clone().requires_grad_()
    params = [scene[k].clone() for k in PARAMS]
    outs = []
    for backend in ("native", "torch"):
        img, _, _ = rasterize_gaussians(*params, viewmats, scene["Ks"], 40, 32, RasterConfig(backend=backend))
        outs.append(torch.autograd.grad(img.square().sum(), viewmats)[0])
    assert outs[1].abs().max() > 0
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-9, atol=1e-9)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_binning_equals_the_reference_binning(dtype):
    scene = {k: v.to(dtype) for k, v in make_scene(2000, seed=9).items()}
    proj = project_gaussians_ref(scene["means"], scene["quats"], scene["scales"], scene["viewmats"], scene["Ks"],
                                 70, 50, 0.01, 1e10, 0.3, 0.0)
    # Ties in depth must break by Gaussian index in both.
    depths = torch.round(proj.depths * 4) / 4
    bins = bin_gaussians(proj.means2d, proj.radii, depths, 70, 50, 16)
    ref = bin_gaussians_ref(proj.means2d, proj.radii, depths, 70, 50, 16)
    assert bins.flatten_ids.numel() > 2000
    assert torch.equal(bins.tile_offsets, ref.tile_offsets)
    assert torch.equal(bins.flatten_ids, ref.flatten_ids)


def test_sh_bases_are_orthonormal_on_the_sphere():
    # Fibonacci sphere: near-uniform points, so the mean approximates the sphere integral / 4 pi.
    n = 20000
    k = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * k / n
    phi = math.pi * (1 + 5**0.5) * k
    r = torch.sqrt(1 - z * z)
    dirs = torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=-1)
    bases = sh_bases(3, dirs)  # [n, 16]
    gram = 4 * math.pi * bases.T @ bases / n
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), rtol=0, atol=1e-3)


@pytest.mark.parametrize("backend", ["torch", pytest.param("native", marks=needs_native)])
def test_zero_gaussians_render_empty_images(backend):
    scene = {k: v[:0] if k in PARAMS else v for k, v in make_scene(12, seed=0).items()}
    (img, alpha, meta), _ = render(scene, backend)
    assert img.shape == (2, 32, 40, 3) and img.eq(0).all() and alpha.eq(0).all()
    assert meta.radii.shape == (2, 0, 2)
