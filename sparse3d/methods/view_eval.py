"""The per-view evaluation on held-out views that every novel-view method reports."""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from sparse3d.data.dataset import MultiViewDataset
from sparse3d.geometry.cameras import Cameras
from sparse3d.render.metrics import (
    find_lpips_weights,
    image_metrics,
    inside_mask_metrics,
    protocol_target,
)


def heldout_view_report(
    render: Callable[[Cameras], Tensor], data: MultiViewDataset, indices: Tensor, device: torch.device | str
) -> dict[str, Any]:
    """PSNR, SSIM and LPIPS of each view in ``indices`` by the GaussianObject protocol, and
    their means.

    The protocol (:mod:`sparse3d.render.metrics`) compares the render over white,
    unmasked, with the ground truth over white by the view's coverage (the soft alphas,
    else the masks; :func:`~sparse3d.render.metrics.protocol_target`); without either,
    the metrics are plain full-frame ones.

    With a coverage, ``*_inside_mask`` metrics composite both images over white by it
    (:func:`~sparse3d.render.metrics.inside_mask_metrics`): errors outside the object do
    not count there. LPIPS (VGG) is None unless :func:`find_lpips_weights` finds local
    weights.

    Args:
        render: maps a batch of one camera (on ``device``) to its float [H, W, 3] RGB over
            white, e.g. ``lambda c: method.get_outputs_for_camera(c)["rgb"]``; clamped to
            [0, 1] here.
        data: the data set; images uint8 [N, H, W, 3].
        indices: int64 [E] views to evaluate (e.g. ``data.test_indices``).
        device: where the targets and cameras go (the render's device).

    Returns:
        ``{"psnr", "ssim", "lpips"}`` (plus ``"psnr_inside_mask"``, ``"ssim_inside_mask"``,
        ``"lpips_inside_mask"`` when the data has alphas or masks): floats, the means over
        the views, None for LPIPS without weights and for every mean when ``indices`` is
        empty; and ``"views"``: one dict per view with ``"name"`` and the same keys.
    """
    lpips_weights = find_lpips_weights()
    views = []
    for index in indices.tolist():
        rgb = render(data.cameras[index].to(device))[None].clamp(0, 1)  # [1, H, W, 3]
        target, coverage = protocol_target(*_view_fields(data, index, device))
        view = {"name": data.image_names[index], **image_metrics(rgb, target, lpips_weights=lpips_weights).mean()}
        if coverage is not None:
            inside = inside_mask_metrics(rgb, target, coverage, lpips_weights=lpips_weights).mean()
            view |= {f"{k}_inside_mask": v for k, v in inside.items()}
        views.append(view)
    keys = ["psnr", "ssim", "lpips"]
    if data.alphas is not None or data.masks is not None:
        keys += [f"{k}_inside_mask" for k in keys]
    means = {k: _mean([view[k] for view in views]) for k in keys}
    return {**means, "views": views}


def _view_fields(data: MultiViewDataset, index: int, device: torch.device | str) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The image, alphas and masks of view ``index`` as batches of one, on ``device``."""
    pick = slice(index, index + 1)
    fields = (data.images, data.alphas, data.masks)
    return tuple(None if f is None else f[pick].to(device) for f in fields)


def _mean(values: list[float | None]) -> float | None:
    return None if not values or None in values else sum(values) / len(values)
