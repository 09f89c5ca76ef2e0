"""Image metrics against analytic values, a brute-force SSIM, and scikit-image."""

import importlib.machinery
import math

import numpy as np
import pytest
import torch

from sparse3d.render import metrics
from sparse3d.render.metrics import (
    LpipsVgg,
    LpipsWeights,
    gaussian_window,
    image_metrics,
    image_over_white,
    inside_mask_metrics,
    psnr,
    ssim,
)

C1, C2 = 0.01**2, 0.03**2


def _images(seed: int, shape=(2, 24, 20, 3)) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=gen, dtype=torch.float64)
    b = (a + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    return a, b


def test_psnr_known_values():
    ref = torch.zeros(1, 4, 4, 3)
    assert psnr(ref + 0.1, ref).item() == pytest.approx(20.0, abs=1e-5)  # mse 0.01
    assert psnr(ref + 0.5, ref).item() == pytest.approx(-10 * math.log10(0.25), abs=1e-5)
    assert torch.isinf(psnr(ref, ref)).all()


def test_ssim_of_constant_images_is_the_luminance_term():
    a, b = 0.3, 0.7
    img, ref = torch.full((1, 16, 16, 3), a, dtype=torch.float64), torch.full((1, 16, 16, 3), b, dtype=torch.float64)
    expected = (2 * a * b + C1) / (a * a + b * b + C1)  # zero variance: contrast/structure term is 1
    assert ssim(img, ref, border="valid").item() == pytest.approx(expected, abs=1e-12)
    assert ssim(ref, ref).item() == pytest.approx(1.0, abs=1e-12)


def _ssim_brute_force(x: np.ndarray, y: np.ndarray, pad: bool) -> float:
    """Window-by-window SSIM of one channel, straight from the definition."""
    w = np.outer(*(2 * [gaussian_window().numpy()]))
    r = 5
    if pad:
        x, y = np.pad(x, r), np.pad(y, r)
    values = []
    for i in range(r, x.shape[0] - r):
        for j in range(r, x.shape[1] - r):
            px, py = x[i - r : i + r + 1, j - r : j + r + 1], y[i - r : i + r + 1, j - r : j + r + 1]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * px * px).sum() - mx * mx, (w * py * py).sum() - my * my
            cxy = (w * px * py).sum() - mx * my
            values.append((2 * mx * my + C1) * (2 * cxy + C2) / ((mx * mx + my * my + C1) * (vx + vy + C2)))
    return float(np.mean(values))


@pytest.mark.parametrize("border", ["same", "valid"])
def test_ssim_matches_brute_force(border):
    a, b = _images(0, (1, 18, 15, 1))
    expected = _ssim_brute_force(a[0, :, :, 0].numpy(), b[0, :, :, 0].numpy(), pad=border == "same")
    assert ssim(a, b, border).item() == pytest.approx(expected, abs=1e-12)


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    a, b = _images(1, (3, 32, 40, 3))
    for i in range(3):
        expected = metrics.structural_similarity(
            a[i].numpy(),
            b[i].numpy(),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=2,
        )
        assert ssim(a[i : i + 1], b[i : i + 1], border="valid").item() == pytest.approx(expected, abs=1e-10)


def test_ssim_is_differentiable_and_batched():
    a, b = _images(2)
    a.requires_grad_(True)
    loss = (1 - ssim(a, b)).sum()
    loss.backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    per_image = torch.stack([ssim(a[i : i + 1], b[i : i + 1])[0] for i in range(2)])
    torch.testing.assert_close(ssim(a, b), per_image)
    assert ssim(a[0], b[0]).shape == ()


def _object_on_grey() -> tuple[torch.Tensor, torch.Tensor]:
    """A 16 x 16 ground truth: a 0.5 object on rows/columns 4-11 over a 0.2 grey background, and its mask."""
    gt = torch.full((1, 16, 16, 3), 0.2, dtype=torch.float64)
    gt[:, 4:12, 4:12] = 0.5
    mask = torch.zeros(1, 16, 16, dtype=torch.bool)
    mask[:, 4:12, 4:12] = True
    return gt, mask


def test_protocol_target_is_the_ground_truth_over_white_by_its_mask():
    gt, mask = _object_on_grey()
    target = image_over_white(gt, mask)
    assert (target[~mask] == 1).all() and (target[mask] == 0.5).all()  # the grey background is gone
    alpha = mask.double()
    alpha[0, 0, 0] = 0.5  # a half-covered pixel: 0.5 * 0.2 + 0.5 * 1
    assert image_over_white(gt, alpha)[0, 0, 0].tolist() == pytest.approx([0.6] * 3)


def test_protocol_counts_floaters_that_inside_mask_metrics_hide():
    gt, mask = _object_on_grey()
    render = torch.ones_like(gt)  # over white, unmasked: perfect object ...
    render[:, 4:12, 4:12] = 0.5
    render[:, 0:2, 0:4] = 0.5  # ... and a grey floater on 8 background pixels
    protocol = image_metrics(render, image_over_white(gt, mask))
    # Only the floater differs from the target (white there): mse = 8 * 0.5^2 / 256.
    assert protocol.psnr.item() == pytest.approx(-10 * math.log10(8 * 0.25 / 256), abs=1e-9)
    assert protocol.ssim.item() < 1 and protocol.lpips is None and protocol.mean()["lpips"] is None
    inside = inside_mask_metrics(render, gt, mask)
    assert torch.isinf(inside.psnr).all() and inside.ssim.item() == pytest.approx(1.0)
    render[:, 4:12, 4:12] += 0.1  # error 0.1 on the 64 object pixels: both see it
    assert inside_mask_metrics(render, gt, mask).psnr.item() == pytest.approx(-10 * math.log10(64 * 0.01 / 256))
    assert image_metrics(render, image_over_white(gt, mask)).psnr.item() == pytest.approx(
        -10 * math.log10((64 * 0.01 + 8 * 0.25) / 256)
    )


def test_inside_mask_metrics_weight_errors_by_a_soft_mask():
    gt, _ = _object_on_grey()
    alpha = torch.zeros(1, 16, 16, dtype=torch.float64)
    alpha[0, 0, 0] = 0.25
    render = gt.clone()
    render[0, 0, 0] += 0.4  # composited by alpha 0.25 the error is 0.1, on 1 of 256 pixels
    assert inside_mask_metrics(render, gt, alpha).psnr.item() == pytest.approx(-10 * math.log10(0.01 / 256))


def test_lpips_from_local_weight_files(tmp_path):
    # Random weights in the two files' layouts: checks loading, shapes and the metric's
    # invariants (zero on equal images, symmetry, positivity); the real weights are
    # never downloaded.
    gen = torch.Generator().manual_seed(0)
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    indices = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    vgg, in_ch = {}, 3
    for idx, out_ch in zip(indices, widths):
        vgg[f"features.{idx}.weight"] = torch.randn(out_ch, in_ch, 3, 3, generator=gen) * (2 / (9 * in_ch)) ** 0.5
        vgg[f"features.{idx}.bias"] = torch.zeros(out_ch)
        in_ch = out_ch
    lin = {
        f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=gen) for k, c in enumerate([64, 128, 256, 512, 512])
    }
    torch.save(vgg, tmp_path / "vgg16.pth")
    torch.save(lin, tmp_path / "vgg.pth")
    weights = LpipsWeights(tmp_path / "vgg16.pth", tmp_path / "vgg.pth")
    a, b = (x.float() for x in _images(3, (1, 16, 16, 3)))
    with torch.no_grad():  # one batch: (a, b), (b, a), (a, a)
        d_ab, d_ba, d_aa = LpipsVgg(weights)(torch.cat([a, b, a]), torch.cat([b, a, a]))
    assert d_ab > 0 and d_aa == 0
    torch.testing.assert_close(d_ab, d_ba)
    assert image_metrics(a, b, lpips_weights=weights).lpips.shape == (1,)
    mask = torch.zeros(1, 16, 16, dtype=torch.bool)
    assert inside_mask_metrics(a, b, mask, lpips_weights=weights).lpips.item() == 0  # both all white
    del lin["lin3.model.1.weight"]
    torch.save(lin, tmp_path / "vgg.pth")
    with pytest.raises(ValueError, match="has no 'lin3.model.1.weight'"):
        LpipsVgg(weights)


def test_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(1, 4, 4, 3), torch.zeros(1, 4, 5, 3))
    with pytest.raises(ValueError, match="at least 11 x 11"):
        ssim(torch.zeros(1, 8, 8, 3), torch.zeros(1, 8, 8, 3), border="valid")


def test_find_lpips_weights_only_reports_local_files(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics.torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    package = tmp_path / "site" / "lpips"
    spec = importlib.machinery.ModuleSpec("lpips", None, origin=str(package / "__init__.py"))
    monkeypatch.setattr(metrics.importlib.util, "find_spec", lambda name: spec if name == "lpips" else None)
    assert metrics.find_lpips_weights() is None  # neither file exists: nothing is fetched
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth").write_bytes(b"")
    assert metrics.find_lpips_weights() is None  # the linear heads are still missing
    (package / "weights" / "v0.1").mkdir(parents=True)
    (package / "weights" / "v0.1" / "vgg.pth").write_bytes(b"")
    found = metrics.find_lpips_weights()
    assert found == LpipsWeights(tmp_path / "hub/checkpoints/vgg16-397923af.pth", package / "weights/v0.1/vgg.pth")
