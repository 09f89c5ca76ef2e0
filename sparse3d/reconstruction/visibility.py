"""Which surface points of a view the input views see, and where a render's error lies.

A sparse-view reconstruction can only learn surface it was shown. To explain the error
of a held-out view, its pixels fall into three disjoint regions:

- **outside**: outside the object's mask (phantom volume, floaters, soft silhouettes);
- **seen**: inside the mask, on a surface point that at least one input view sees;
- **unseen**: inside the mask, on a surface point that no input view sees.

:func:`seen_by_views` finds the seen pixels from ground-truth depth maps (a visibility
test: back-project, re-project, compare depths), :func:`error_shares` splits one view's
squared error over the regions, and :func:`heldout_error_shares` does both for every
held-out view of a trained method.
"""

import math
from typing import Any

import torch
from torch import Tensor

from sparse3d.data.dataset import MultiViewDataset
from sparse3d.geometry.cameras import Cameras
from sparse3d.reconstruction.views import CameraRenderer
from sparse3d.render.metrics import protocol_target

DEFAULT_TOLERANCE = 0.01
"""Relative depth tolerance of :func:`seen_by_views`: a surface less than 1 % of the
point's depth in front of it does not hide it.

Relative, because depth maps are in the data set's own units (a COLMAP scene has an
arbitrary scale) and the error to absorb grows with depth. The test needs little of it:
a re-projected point lies inside the square of its 3 x 3 neighbouring pixel centres, and
on a locally planar surface 1/z is affine in pixel coordinates, so one of those centres
holds a depth at or beyond the point's exactly, however grazing the view. The tolerance
absorbs what is not planar within a pixel (curvature, steepest at a silhouette; a
mesh's facet edges) and float error; its price is that an occluder closer than 1 % of the depth to
the point (4 cm at 4 units) does not hide it. On the analytic sphere
(tests/reconstruction/test_visibility.py: 128 px, 40 deg field of view, 4 sources) this
agrees with the exact answer on 97 % of the foreground; the rest are points no source
sees at less than 82 deg from their normal (marked unseen: foreshortened 7x or more, a
source hardly learns them) and ~10 pixels within 1 deg behind a source's limb (marked
seen). 0.005 gives 96.2 % (misses from 80.5 deg); 0.02 gives 98.2 % but marks points up
to 3.3 deg behind a limb as seen, i.e. lets a 2 % gap of real occlusion through.
"""

_REGIONS = ("outside", "seen", "unseen")
# The 3 x 3 neighbourhood of the pixel a point lands in, as (dv, du) offsets.
_NEIGHBOURS = torch.tensor([(dv, du) for dv in (-1, 0, 1) for du in (-1, 0, 1)])


def seen_by_views(
    target: Cameras,
    target_depth: Tensor,
    sources: Cameras,
    source_depths: Tensor,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Tensor:
    """Which foreground pixels of a target view show a surface point some source view sees.

    Each foreground pixel's centre (u + 0.5, v + 0.5) is back-projected to the world point
    at its ground-truth depth and projected into every source. A source sees the point
    when it lies in front of the camera, inside its image, and is not occluded: some pixel
    of the 3 x 3 neighbourhood of the pixel it lands in is foreground with a depth of at
    least ``(1 - tolerance) * z`` (z the point's camera-frame depth there), i.e. the ray
    through that pixel centre gets to the point's depth before it meets a surface. A
    single pixel read at the nearest centre would fail at grazing angles, where depth
    changes by many times the tolerance from one pixel to the next (see
    :data:`DEFAULT_TOLERANCE`); the price of the neighbourhood is that a point hidden by
    an occluder less than a pixel from the occluder's silhouette counts as seen.

    Args:
        target: one camera (a batch of one), image W x H.
        target_depth: float [H, W] camera-frame z (OpenCV, +z forward) at the pixel
            centres; background pixels hold 0 or a non-finite value (inf, nan).
        sources: V cameras, image W' x H'.
        source_depths: float [V, H', W'] the same for the sources.
        tolerance: relative depth tolerance, > 0 (a fraction of the point's z in the
            source).

    Returns:
        bool [H, W]: True where the pixel is foreground and seen by at least one source,
        False on background pixels. On ``target_depth``'s device.

    Raises:
        ValueError: ``target`` is not one camera, a depth map does not match its
            cameras' image size, or ``tolerance`` is not positive.
    """
    if len(target) != 1:
        raise ValueError(f"seen_by_views: target must be one camera, got {len(target)}")
    if target_depth.shape != (target.height, target.width):
        raise ValueError(
            f"seen_by_views: target_depth must be [{target.height}, {target.width}] to match the target "
            f"camera, got {list(target_depth.shape)}"
        )
    v, h, w = len(sources), sources.height, sources.width
    if source_depths.shape != (v, h, w):
        raise ValueError(
            f"seen_by_views: source_depths must be [{v}, {h}, {w}] to match the sources, "
            f"got {list(source_depths.shape)}"
        )
    if not tolerance > 0:
        raise ValueError(f"seen_by_views: tolerance must be > 0 (relative to depth), got {tolerance}")
    device = target_depth.device
    # float64 throughout: back-projecting and re-projecting in float32 would cost ~1e-6 of
    # the depth, harmless, but there is no reason to spend any of the tolerance on it.
    depth = target_depth.to(torch.float64)
    foreground = torch.isfinite(depth) & (depth > 0)
    seen = torch.zeros_like(foreground)
    if v == 0 or not foreground.any():
        return seen
    points = _back_project(target.to(device), depth, foreground)  # [P, 3] world frame
    cams = sources.to(device)
    cam_points = cams.to_camera(points)  # [V, P, 3]
    z = cam_points[..., 2]  # [V, P]
    uvw = cam_points @ cams.Ks.to(torch.float64).transpose(1, 2)  # [V, P, 3]
    # Points behind a camera get z <= 0: divide by a positive stand-in, they fail `front`.
    uv = uvw[..., :2] / torch.where(z > 0, z, 1.0)[..., None]  # [V, P, 2] pixel coordinates
    front = z > 0
    inside = (uv[..., 0] >= 0) & (uv[..., 0] < w) & (uv[..., 1] >= 0) & (uv[..., 1] < h) & front
    # The pixel the point lands in (pixel u covers [u, u + 1)), and its 3 x 3 neighbours.
    col = uv[..., 0].floor().clamp(0, w - 1).long()[..., None] + _NEIGHBOURS[:, 1].to(device)  # [V, P, 9]
    row = uv[..., 1].floor().clamp(0, h - 1).long()[..., None] + _NEIGHBOURS[:, 0].to(device)  # [V, P, 9]
    in_image = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    flat = row.clamp(0, h - 1) * w + col.clamp(0, w - 1)  # [V, P, 9]
    near = torch.gather(source_depths.to(device, torch.float64).flatten(1), 1, flat.flatten(1)).view_as(flat)
    valid = in_image & torch.isfinite(near) & (near > 0)
    # Unblocked: the ray through that pixel centre reaches (within the tolerance) the
    # point's depth before it hits a surface. Background neighbours are no evidence either
    # way: counting them as unblocked would mark a band behind every silhouette as seen.
    unblocked = valid & (near >= (1 - tolerance) * z[..., None])  # [V, P, 9]
    seen_by = inside & unblocked.any(-1)  # [V, P]
    seen[foreground] = seen_by.any(0)
    return seen


def error_shares(render: Tensor, target: Tensor, mask: Tensor, seen: Tensor) -> dict[str, float]:
    """Splits a view's squared error over the outside / seen / unseen regions.

    The regions are disjoint and cover the image: outside = ``~mask``, seen = ``mask &
    seen``, unseen = ``mask & ~seen`` (``seen`` outside the mask is ignored).

    Args:
        render: float [H, W, 3] the rendered view in [0, 1] (over white).
        target: float [H, W, 3] its ground truth (over white by the mask: the protocol's
            target).
        mask: bool [H, W] the object's mask (True = object).
        seen: bool [H, W] pixels seen by the input views (:func:`seen_by_views`).

    Returns:
        For each region R in ("outside", "seen", "unseen"): ``share_R``, its squared error
        over the whole image's (the three sum to 1; nan when the render is exact),
        ``pixels_R``, its pixel count, and ``psnr_without_R``, the PSNR (dB, data range 1)
        the view would reach were that region's error zero (inf if nothing is left); plus
        ``psnr``, the view's PSNR as it is.

    Raises:
        ValueError: the shapes or dtypes do not match.
    """
    sse, counts = _region_sse(render, target, mask, seen)
    return _report(sse, counts, values=render.numel())


def heldout_error_shares(
    method: CameraRenderer,
    data: MultiViewDataset,
    tolerance: float = DEFAULT_TOLERANCE,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Where a trained method's error on the held-out views lies: outside the mask, on
    surface the training views see, or on surface none of them sees.

    Each view in ``data.test_indices`` is rendered (its "rgb" clamped to [0, 1]) and
    compared with the protocol's target, the image over white by its coverage (as in
    :func:`sparse3d.methods.view_eval.heldout_view_report`); its seen pixels are those of
    :func:`seen_by_views` against the training views ``data.train_indices``, both from
    ``data.depths``.

    Args:
        method: e.g. a trained method (:class:`CameraRenderer`).
        data: the data set, with ``depths`` and ``masks`` or ``alphas``.
        tolerance: the relative depth tolerance of :func:`seen_by_views`.
        device: where the method renders (its cameras go there).

    Returns:
        The keys of :func:`error_shares` over all held-out views: ``share_*`` from the
        squared errors summed over every view (so a view with more error weighs more),
        ``pixels_*`` summed, and ``psnr`` / ``psnr_without_*`` the means over the views
        of the per-view values (so ``psnr`` is the protocol's mean PSNR and the gaps are
        in its units); plus ``"views"``: one :func:`error_shares` dict per view, with its
        ``"name"``.

    Raises:
        ValueError: the data has no depths, no masks and no alphas, or no held-out views.
    """
    if data.depths is None:
        raise ValueError(f"heldout_error_shares: the data ({data.source or 'unnamed'}) has no depth maps")
    if data.masks is None and data.alphas is None:
        raise ValueError(f"heldout_error_shares: the data ({data.source or 'unnamed'}) has no masks or alphas")
    if data.test_indices.numel() == 0:
        raise ValueError(f"heldout_error_shares: the data ({data.source or 'unnamed'}) has no held-out views")
    train = data.train_indices
    sources, source_depths = data.cameras[train], data.depths[train]
    sums, counts, values, views = dict.fromkeys(_REGIONS, 0.0), dict.fromkeys(_REGIONS, 0), 0, []
    with torch.no_grad():
        for index in data.test_indices.tolist():
            camera = data.cameras[index]
            render = method.get_outputs_for_camera(camera.to(device))["rgb"].clamp(0, 1).cpu()
            target, _ = protocol_target(data.images[index], None if data.alphas is None else data.alphas[index],
                                        None if data.masks is None else data.masks[index])
            # The readers' mask rule (alpha > 50 %) where only alphas are given.
            mask = data.masks[index] if data.masks is not None else data.alphas[index] > 127
            seen = seen_by_views(camera, data.depths[index], sources, source_depths, tolerance)
            view_sse, view_counts = _region_sse(render, target, mask, seen)
            for region in _REGIONS:
                sums[region] += view_sse[region]
                counts[region] += view_counts[region]
            values += render.numel()
            views.append({"name": data.image_names[index], **_report(view_sse, view_counts, render.numel())})
    summary = _report(sums, counts, values)
    for key in ["psnr"] + [f"psnr_without_{region}" for region in _REGIONS]:
        summary[key] = sum(view[key] for view in views) / len(views)
    return {**summary, "views": views}


def _back_project(camera: Cameras, depth: Tensor, foreground: Tensor) -> Tensor:
    """float64 [P, 3] world points at the centres of the ``foreground`` [H, W] pixels of
    ``camera`` at camera-frame z ``depth`` [H, W] (P = foreground count)."""
    v, u = foreground.nonzero(as_tuple=True)
    z = depth[v, u]
    pixels = torch.stack([u + 0.5, v + 0.5, torch.ones_like(z)], -1).to(torch.float64)  # [P, 3]
    rays = pixels @ torch.linalg.inv(camera.Ks[0].to(torch.float64)).T  # [P, 3] camera frame, z = 1
    cam_points = rays * z[:, None]
    rot, trans = camera.viewmats[0, :3, :3].to(torch.float64), camera.viewmats[0, :3, 3].to(torch.float64)
    return (cam_points - trans) @ rot  # R^T (x - t), row-wise


def _region_sse(render: Tensor, target: Tensor, mask: Tensor, seen: Tensor) -> tuple[dict[str, float], dict[str, int]]:
    """Squared error (float64 sums) and pixel count of each region of one view."""
    hw = tuple(mask.shape)
    if len(hw) != 2 or render.shape != (*hw, 3) or target.shape != (*hw, 3) or seen.shape != hw:
        raise ValueError(
            "error_shares: expected render and target [H, W, 3] with mask and seen [H, W], got "
            f"{list(render.shape)}, {list(target.shape)}, {list(mask.shape)}, {list(seen.shape)}"
        )
    if mask.dtype != torch.bool or seen.dtype != torch.bool:
        raise ValueError(f"error_shares: mask and seen must be bool, got {mask.dtype} and {seen.dtype}")
    if not (render.is_floating_point() and target.is_floating_point()):
        raise ValueError(f"error_shares: render and target must be float, got {render.dtype} and {target.dtype}")
    errors = (render.to(torch.float64) - target.to(torch.float64).to(render.device)).square().sum(-1)  # [H, W]
    mask, seen = mask.to(errors.device), seen.to(errors.device)
    regions = {"outside": ~mask, "seen": mask & seen, "unseen": mask & ~seen}
    sse = {name: float(errors[region].sum()) for name, region in regions.items()}
    counts = {name: int(region.sum()) for name, region in regions.items()}
    return sse, counts


def _report(sse: dict[str, float], counts: dict[str, int], values: int) -> dict[str, float]:
    """Shares, counts and PSNRs (see :func:`error_shares`) from per-region sums over
    ``values`` colour values."""
    total = sum(sse.values())
    out: dict[str, float] = {"psnr": _psnr(total, values)}
    for region in _REGIONS:
        out[f"share_{region}"] = sse[region] / total if total > 0 else math.nan
        out[f"pixels_{region}"] = counts[region]
        out[f"psnr_without_{region}"] = _psnr(total - sse[region], values)
    return out


def _psnr(sse: float, values: int) -> float:
    """PSNR in dB for data range 1 of a squared error summed over ``values`` values."""
    return math.inf if sse <= 0 else -10.0 * math.log10(sse / values)
