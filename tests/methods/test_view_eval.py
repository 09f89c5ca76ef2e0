"""The shared held-out view report against hand-worked values, with a fake renderer."""

import math

import pytest
import torch

from sparse3d.data.dataset import MultiViewDataset
from sparse3d.geometry.cameras import Cameras, intrinsics_from_fov, look_at_viewmats
from sparse3d.methods import view_eval
from sparse3d.methods.view_eval import heldout_view_report

H = W = 16
GREY, OBJECT = 51, 128  # uint8 background and object of the ground truth


@pytest.fixture(autouse=True)
def no_lpips_weights(monkeypatch):
    monkeypatch.setattr(view_eval, "find_lpips_weights", lambda: None)


def _dataset(images: torch.Tensor, **optional) -> MultiViewDataset:
    """Views on a ring around the origin; every view held out."""
    n = len(images)
    angles = torch.arange(n) * 2 * math.pi / n
    eyes = torch.stack([3 * angles.cos(), 3 * angles.sin(), torch.ones(n)], -1)
    Ks = intrinsics_from_fov(40.0, W, H).expand(n, 3, 3).clone()
    cameras = Cameras(look_at_viewmats(eyes, torch.zeros(n, 3)), Ks, W, H)
    names = [f"{i:03d}.png" for i in range(n)]
    empty = torch.zeros(0, dtype=torch.int64)
    return MultiViewDataset(cameras, images, names, empty, torch.arange(n), **optional)


def _renderer(data: MultiViewDataset, renders: torch.Tensor):
    """``render(camera)``: ``renders[i]`` for the camera of view i (one camera per call)."""

    def render(camera: Cameras) -> torch.Tensor:
        assert len(camera) == 1
        return renders[int((data.cameras.viewmats - camera.viewmats).abs().sum((1, 2)).argmin())]

    return render


def _object_on_grey(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [n, H, W, 3] object on rows/columns 4-11 over a grey background, and bool [n, H, W] masks."""
    images = torch.full((n, H, W, 3), GREY, dtype=torch.uint8)
    images[:, 4:12, 4:12] = OBJECT
    masks = torch.zeros(n, H, W, dtype=torch.bool)
    masks[:, 4:12, 4:12] = True
    return images, masks


def _psnr(sum_squared_error: float) -> float:
    """PSNR of an error summed over the pixels of one channel (every channel equal)."""
    return -10 * math.log10(sum_squared_error / (H * W))


def test_masks_protocol_counts_floaters_and_inside_mask_does_not():
    images, masks = _object_on_grey(2)
    data = _dataset(images, masks=masks)
    renders = torch.full((2, H, W, 3), 1.3)  # over white; overshoot is clamped to 1
    renders[:, 4:12, 4:12] = OBJECT / 255
    renders[0, 0:2, 0:4] = OBJECT / 255  # view 0: a floater on 8 background pixels
    renders[1, 4:12, 4:12] += 0.1  # view 1: error 0.1 on the 64 object pixels
    report = heldout_view_report(_renderer(data, renders), data, data.test_indices, "cpu")

    v0, v1 = report["views"]
    assert (v0["name"], v1["name"]) == ("000.png", "001.png")
    # The target is white outside the mask (not the grey background): only the floater counts.
    assert v0["psnr"] == pytest.approx(_psnr(8 * (1 - OBJECT / 255) ** 2), abs=1e-4)
    assert v0["ssim"] < 1 and math.isinf(v0["psnr_inside_mask"]) and v0["ssim_inside_mask"] == pytest.approx(1.0)
    assert v1["psnr"] == pytest.approx(_psnr(64 * 0.01), abs=1e-4)
    assert v1["psnr_inside_mask"] == pytest.approx(_psnr(64 * 0.01), abs=1e-4)
    assert report["psnr"] == pytest.approx((v0["psnr"] + v1["psnr"]) / 2)
    assert report["ssim"] == pytest.approx((v0["ssim"] + v1["ssim"]) / 2)
    assert math.isinf(report["psnr_inside_mask"])
    assert report["lpips"] is None and report["lpips_inside_mask"] is None and v0["lpips"] is None


def test_soft_alphas_take_precedence_over_masks():
    # The reader composites each pixel over white by its alpha: a black pixel with alpha
    # 102 (0.4) reads as 153 (0.6), and its mask (alpha > 127) is False.
    images = torch.full((1, H, W, 3), 255, dtype=torch.uint8)
    alphas = torch.zeros(1, H, W, dtype=torch.uint8)
    images[0, 4:12, 4:12], alphas[0, 4:12, 4:12] = OBJECT, 255
    images[0, 0, 0], alphas[0, 0, 0] = 153, 102
    data = _dataset(images, masks=alphas > 127, alphas=alphas)

    perfect = heldout_view_report(_renderer(data, images.float() / 255), data, data.test_indices, "cpu")
    # The image is the target as it is: compositing it again would turn 0.6 into 0.76.
    assert math.isinf(perfect["psnr"]) and math.isinf(perfect["psnr_inside_mask"])

    renders = images.float() / 255
    renders[0, 0, 0] = 1.0  # the soft edge is missing
    report = heldout_view_report(_renderer(data, renders), data, data.test_indices, "cpu")
    assert report["psnr"] == pytest.approx(_psnr(0.4**2), abs=1e-4)
    # Inside the (soft) mask the error is weighted by the alpha 0.4; the bool mask would drop it.
    assert report["psnr_inside_mask"] == pytest.approx(_psnr((0.4 * 0.4) ** 2), abs=1e-4)


def test_without_masks_the_metrics_are_plain_full_frame():
    images, _ = _object_on_grey(1)
    data = _dataset(images)
    renders = torch.ones(1, H, W, 3)  # the white background differs from the grey one
    renders[:, 4:12, 4:12] = OBJECT / 255
    report = heldout_view_report(_renderer(data, renders), data, data.test_indices, "cpu")
    assert set(report) == {"psnr", "ssim", "lpips", "views"}
    assert set(report["views"][0]) == {"name", "psnr", "ssim", "lpips"}
    assert report["psnr"] == pytest.approx(_psnr((H * W - 64) * (1 - GREY / 255) ** 2), abs=1e-4)
    assert report["lpips"] is None


def test_no_views_gives_none_means():
    images, masks = _object_on_grey(1)
    data = _dataset(images, masks=masks)
    report = heldout_view_report(_renderer(data, images.float()), data, torch.zeros(0, dtype=torch.int64), "cpu")
    assert report == {k: None for k in report if k != "views"} | {"views": []}
    assert {"psnr", "psnr_inside_mask", "lpips_inside_mask"} <= report.keys()
