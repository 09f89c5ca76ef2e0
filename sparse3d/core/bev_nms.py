"""Rotated bird's-eye-view (BEV) box IoU and non-maximum suppression.

Boxes are LiDAR-frame rows ``(x, y, z, dx, dy, dz, yaw)``: (x, y, z) the centre, dx the
length along the heading, dy the width across it, yaw the heading, counter-clockwise about
+z from +x. Only x, y, dx, dy and yaw are used (z and dz are ignored: BEV); columns after the
seventh (velocities, ...) are allowed and ignored. The IoU of two boxes is
``inter / max(area_a + area_b - inter, 1e-8)`` with ``area = dx * dy``.

:func:`rotated_nms` and :func:`circle_nms` follow OpenPCDet's ``nms_gpu`` and ``circle_nms``
(pcdet/ops/iou3d_nms, pcdet/models/model_utils/centernet_utils.py): greedy in descending
score order, ``IoU > threshold`` (strict) suppresses a later box in rotated NMS, a squared
centre distance ``<= threshold`` (inclusive) in circle NMS, and the result holds input
indices in the order they were kept. Where this module differs from OpenPCDet:

- The intersection is exact. OpenPCDet collects candidate vertices (edge crossings, and
  corners of one box inside the other with a 1e-2 slack on the inside test, |u| < d/2 + 0.01),
  orders them by angle and sums the fan; the slack counts corners up to 1 cm outside the
  other box as inside, so boxes a few millimetres apart get a positive IoU and near-touching
  ones too much. Here one rectangle is clipped by the other's four half-planes
  (Sutherland-Hodgman, in double precision, no slack): touching boxes overlap by 0, identical
  boxes have IoU 1, and a zero-size box has IoU 0 with everything.
- Ties are deterministic: scores are sorted stably, so equal scores keep the lower input
  index first (OpenPCDet's ``scores.sort`` leaves tie order unspecified).
- The suppression test compares the IoU in double precision with the threshold (OpenPCDet
  compares float32 values), so an IoU that equals the threshold is never suppressed.

The native ops (``sparse3d::bev_iou``, ``sparse3d::rotated_nms``; CPU and CUDA) clip with
the same lines on both devices (cuda/include/sparse3d/box_overlap.h). The torch references
:func:`bev_iou_ref` and :func:`rotated_nms_ref` use a different exact construction (every
corner inside the other box and every edge crossing, ordered by angle) and are the
fallback when the extension is not built.
"""

import math

import torch
from torch import Tensor

from sparse3d._native import HAS_NATIVE

_MIN_UNION = 1e-8
# Pairs of boxes per chunk of the reference's polygon step (about 2 KB of temporaries each).
_REF_PAIR_CHUNK = 1 << 15


def bev_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """IoU of the BEV footprints of every pair of boxes.

    Args:
        boxes_a: float [N, 7+] LiDAR-frame boxes ``(x, y, z, dx, dy, dz, yaw, ...)``.
        boxes_b: float [M, 7+] boxes on the same device.

    Returns:
        float32 [N, M] with entry (i, j) the IoU of ``boxes_a[i]`` and ``boxes_b[j]`` in
        [0, 1]; 0 where either box has zero area. Not differentiable.
    """
    a = _check_boxes(boxes_a, "bev_iou", "boxes_a")
    b = _check_boxes(boxes_b, "bev_iou", "boxes_b")
    if a.device != b.device:
        raise ValueError(f"bev_iou: boxes_a and boxes_b must be on one device, got {a.device} and {b.device}")
    if a.dtype != b.dtype:
        a, b = a.double(), b.double()
    if HAS_NATIVE:
        return torch.ops.sparse3d.bev_iou(a, b)
    return bev_iou_ref(a, b)


def rotated_nms(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float,
    pre_max_size: int | None = None,
    post_max_size: int | None = None,
) -> Tensor:
    """Greedy non-maximum suppression of rotated BEV boxes.

    Boxes are visited by descending score (a stable sort: equal scores keep the lower index
    first); a box is kept unless a kept box has ``IoU > iou_threshold`` (strict) with it.

    Args:
        boxes: float [N, 7+] LiDAR-frame boxes ``(x, y, z, dx, dy, dz, yaw, ...)``.
        scores: float [N] on the same device.
        iou_threshold: suppression threshold on the BEV IoU.
        pre_max_size: if given, only the ``pre_max_size`` best-scored boxes take part.
        post_max_size: if given, at most this many kept boxes are returned (the first ones).

    Returns:
        int64 [K] indices into ``boxes`` of the kept boxes, by descending score.
    """
    boxes = _check_boxes(boxes, "rotated_nms", "boxes")
    scores = _check_scores(scores, boxes, "rotated_nms", "boxes")
    threshold = _check_threshold(iou_threshold, "rotated_nms", "iou_threshold")
    pre = _check_max_size(pre_max_size, "rotated_nms", "pre_max_size")
    post = _check_max_size(post_max_size, "rotated_nms", "post_max_size")
    nms = torch.ops.sparse3d.rotated_nms if HAS_NATIVE else rotated_nms_ref
    if pre is not None and pre < boxes.shape[0]:
        # The top scores come out of a stable sort already in order, so the op's own stable
        # sort leaves them there and its indices map back through `top`.
        top = scores.sort(descending=True, stable=True).indices[:pre]
        keep = top[nms(boxes[top], scores[top], threshold)]
    else:
        keep = nms(boxes, scores, threshold)
    return keep if post is None else keep[:post]


def circle_nms(
    centers: Tensor, scores: Tensor, distance_sq_threshold: float, post_max_size: int | None = None
) -> Tensor:
    """Greedy circle NMS (CenterPoint): suppresses boxes whose centres lie near a kept one.

    Centres are visited by descending score (stable: equal scores keep the lower index
    first); a centre is kept unless a kept centre lies within squared distance
    ``distance_sq_threshold`` of it (``<=``, inclusive). Pure torch, O(N) memory, one
    vectorised pass per kept centre, on the CPU.

    Args:
        centers: float [N, 2+] BEV centres ``(x, y, ...)``; boxes ``[N, 7]`` work as they are.
        scores: float [N] on the same device.
        distance_sq_threshold: squared distance in m^2 (OpenPCDet's ``min_radius``).
        post_max_size: if given, at most this many kept centres are returned.

    Returns:
        int64 [K] indices into ``centers`` of the kept centres, by descending score, on the
        device of ``centers``.
    """
    if not isinstance(centers, Tensor):
        raise TypeError(f"circle_nms: centers must be a Tensor, got {type(centers).__name__}")
    if not centers.is_floating_point():
        raise TypeError(f"circle_nms: centers must be a float tensor, got {centers.dtype}")
    if centers.dim() != 2 or centers.shape[1] < 2:
        raise ValueError(f"circle_nms: centers must be [N, 2] (x, y) or wider, got {list(centers.shape)}")
    _check_finite(centers[:, :2], "circle_nms", "centers")
    scores = _check_scores(scores, centers, "circle_nms", "centers")
    threshold = _check_threshold(distance_sq_threshold, "circle_nms", "distance_sq_threshold")
    post = _check_max_size(post_max_size, "circle_nms", "post_max_size")
    order = scores.detach().cpu().sort(descending=True, stable=True).indices
    xy = centers.detach()[:, :2].cpu().double()[order]  # [N, 2] in score order
    removed = torch.zeros(order.shape[0], dtype=torch.bool)
    keep: list[int] = []
    for i in range(order.shape[0]):
        if len(keep) == post:
            break
        if removed[i]:
            continue
        keep.append(i)
        # Marks earlier boxes too; they are already decided, so only later ones matter.
        removed |= (xy - xy[i]).square().sum(1) <= threshold
    return order[keep].to(centers.device)


def bev_iou_ref(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """Pure-torch reference of ``sparse3d::bev_iou`` (same arguments and result).

    Only pairs whose circumcircles meet get the polygon step (in float64, in chunks), so
    scenes of many scattered boxes stay cheap.
    """
    return _bev_iou64(boxes_a, boxes_b).float()


def rotated_nms_ref(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Pure-torch reference of ``sparse3d::rotated_nms`` (no pre/post max sizes).

    Args:
        boxes: float [N, 7+]; scores: float [N]; iou_threshold: suppress IoU > this.

    Returns:
        int64 [K] kept indices into ``boxes``, by descending score (stable).
    """
    order = scores.sort(descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    over = (_bev_iou64(sorted_boxes, sorted_boxes, upper=True) > iou_threshold).cpu()  # [N, N]
    removed = torch.zeros(order.shape[0], dtype=torch.bool)
    keep: list[int] = []
    for i in range(order.shape[0]):
        if not removed[i]:
            keep.append(i)
            removed |= over[i]
    return order[torch.tensor(keep, dtype=torch.int64, device=order.device)]


def _bev_iou64(boxes_a: Tensor, boxes_b: Tensor, upper: bool = False) -> Tensor:
    """float64 [N, M] IoU of every pair (see :func:`bev_iou_ref`); only pairs i < j if ``upper``."""
    fa, fb = _footprints(boxes_a), _footprints(boxes_b)  # [N, 5], [M, 5]: x, y, hx, hy, yaw
    area_a = 4 * fa[:, 2] * fa[:, 3]
    area_b = 4 * fb[:, 2] * fb[:, 3]
    reach = fa[:, 2].hypot(fa[:, 3])[:, None] + fb[:, 2].hypot(fb[:, 3])[None]  # [N, M]
    dist_sq = (fa[:, None, 0] - fb[None, :, 0]).square() + (fa[:, None, 1] - fb[None, :, 1]).square()
    candidates = (dist_sq <= reach.square()) & (area_a[:, None] > 0) & (area_b[None] > 0)
    pairs = (candidates.triu(1) if upper else candidates).nonzero()
    inter = area_a.new_zeros(fa.shape[0], fb.shape[0])
    for chunk in pairs.split(_REF_PAIR_CHUNK):
        i, j = chunk[:, 0], chunk[:, 1]
        cap = torch.minimum(area_a[i], area_b[j])
        inter[i, j] = torch.minimum(_overlap_area(fa[i], fb[j]), cap)
    union = area_a[:, None] + area_b[None] - inter
    return inter / union.clamp(min=_MIN_UNION)


def _footprints(boxes: Tensor) -> Tensor:
    """float64 [N, 5] (x, y, hx, hy, yaw); zero half sizes unless dx > 0 and dy > 0."""
    b = boxes[:, :7].double()
    solid = ((b[:, 3] > 0) & (b[:, 4] > 0)).double()
    return torch.stack([b[:, 0], b[:, 1], b[:, 3] / 2 * solid, b[:, 4] / 2 * solid, b[:, 6]], 1)


def _corners(hx: Tensor, hy: Tensor, cos: Tensor, sin: Tensor, cx: Tensor, cy: Tensor) -> Tensor:
    """[P, 4, 2] counter-clockwise corners of P rectangles with centre (cx, cy), half sizes (hx, hy)."""
    ux, uy = (hx * cos)[:, None], (hx * sin)[:, None]
    vx, vy = (-hy * sin)[:, None], (hy * cos)[:, None]
    su = hx.new_tensor([-1.0, 1.0, 1.0, -1.0])
    sv = hx.new_tensor([-1.0, -1.0, 1.0, 1.0])
    return torch.stack([cx[:, None] + su * ux + sv * vx, cy[:, None] + su * uy + sv * vy], -1)


def _overlap_area(fa: Tensor, fb: Tensor) -> Tensor:
    """float64 [P] intersection areas of P footprint pairs ([P, 5] each), in b's frame.

    The intersection of two convex polygons is the convex polygon whose boundary holds the
    corners of each inside the other and the crossings of their edges; all such points lie
    on that boundary, so ordered by angle around their mean they give its area by the
    shoelace sum (duplicates add nothing).
    """
    P = fa.shape[0]
    zero = fa.new_zeros(P)
    rel = fa[:, 4] - fb[:, 4]
    cb, sb = fb[:, 4].cos(), fb[:, 4].sin()
    dx, dy = fa[:, 0] - fb[:, 0], fa[:, 1] - fb[:, 1]
    ax, ay = cb * dx + sb * dy, -sb * dx + cb * dy  # a's centre in b's frame
    ca, sa = rel.cos(), rel.sin()  # a's yaw in b's frame
    corners_a = _corners(fa[:, 2], fa[:, 3], ca, sa, ax, ay)  # [P, 4, 2]
    corners_b = _corners(fb[:, 2], fb[:, 3], zero + 1, zero, zero, zero)
    # Inclusion slack: rounding of the frame change is ~1e-16 of the box size; a point this
    # far outside adds at most slack * perimeter to the area.
    slack = 1e-9 * (fa[:, 2] + fa[:, 3] + fb[:, 2] + fb[:, 3])[:, None]  # [P, 1]
    a_in_b = (corners_a[..., 0].abs() <= fb[:, 2:3] + slack) & (corners_a[..., 1].abs() <= fb[:, 3:4] + slack)
    # b's corners in a's frame: subtract a's centre, rotate by -rel.
    px, py = corners_b[..., 0] - ax[:, None], corners_b[..., 1] - ay[:, None]
    u, v = ca[:, None] * px + sa[:, None] * py, -sa[:, None] * px + ca[:, None] * py
    b_in_a = (u.abs() <= fa[:, 2:3] + slack) & (v.abs() <= fa[:, 3:4] + slack)
    # Edge k of a (p + t d, t in [0, 1]) against edge l of b (q + s e, s in [0, 1]): [P, 4, 4].
    p, d = corners_a[:, :, None], (corners_a.roll(-1, 1) - corners_a)[:, :, None]
    q, e = corners_b[:, None], (corners_b.roll(-1, 1) - corners_b)[:, None]
    cross = d[..., 0] * e[..., 1] - d[..., 1] * e[..., 0]
    w = q - p
    safe = torch.where(cross == 0, 1.0, cross)
    t = (w[..., 0] * e[..., 1] - w[..., 1] * e[..., 0]) / safe
    s = (w[..., 0] * d[..., 1] - w[..., 1] * d[..., 0]) / safe
    # Parallel edges (cross ~ 0) have no single crossing; their overlaps end at corners,
    # which the inside tests already hold.
    length = d.norm(dim=-1) * e.norm(dim=-1)
    tol = 1e-9
    crossing = (cross.abs() > 1e-12 * length) & (t >= -tol) & (t <= 1 + tol) & (s >= -tol) & (s <= 1 + tol)
    hits = p + t[..., None] * d  # [P, 4, 4, 2]
    points = torch.cat([corners_a, corners_b, hits.reshape(P, 16, 2)], 1)  # [P, 24, 2]
    valid = torch.cat([a_in_b, b_in_a, crossing.reshape(P, 16)], 1)  # [P, 24]
    count = valid.sum(1, keepdim=True)
    mean = (points * valid[..., None]).sum(1) / count.clamp(min=1)  # [P, 2]
    rel_pts = points - mean[:, None]
    angle = torch.atan2(rel_pts[..., 1], rel_pts[..., 0]).masked_fill(~valid, math.inf)
    rank = angle.argsort(1)
    ordered = rel_pts.gather(1, rank[..., None].expand(-1, -1, 2))
    # Invalid points sort last; repeating the first valid point there closes the polygon
    # with zero-length edges.
    sorted_valid = valid.gather(1, rank)
    ordered = torch.where(sorted_valid[..., None], ordered, ordered[:, :1])
    nxt = ordered.roll(-1, 1)
    twice = (ordered[..., 0] * nxt[..., 1] - ordered[..., 1] * nxt[..., 0]).sum(1)
    return torch.where(count[:, 0] >= 3, 0.5 * twice, zero).clamp(min=0)


def _check_boxes(boxes, op: str, name: str) -> Tensor:
    """Validates boxes [N, 7+]; returns them detached, float32 unless float64."""
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(boxes).__name__}")
    if not boxes.is_floating_point():
        raise TypeError(f"{op}: {name} must be a float tensor, got {boxes.dtype}")
    if boxes.dim() != 2 or boxes.shape[1] < 7:
        raise ValueError(
            f"{op}: {name} must be [N, 7] (x, y, z, dx, dy, dz, yaw) or wider, got {list(boxes.shape)}"
        )
    _check_finite(boxes[:, :7], op, name)
    negative = (boxes[:, 3:5] < 0).any(1).nonzero()
    if negative.numel():
        row = int(negative[0])
        raise ValueError(
            f"{op}: {name} must have sizes dx, dy >= 0, got (dx, dy) = {boxes[row, 3:5].tolist()} in row {row} "
            f"of {list(boxes.shape)}"
        )
    boxes = boxes.detach()
    return boxes if boxes.dtype in (torch.float32, torch.float64) else boxes.float()


def _check_finite(values: Tensor, op: str, name: str) -> None:
    bad = (~torch.isfinite(values)).any(1).nonzero()
    if bad.numel():
        row = int(bad[0])
        raise ValueError(f"{op}: {name} must be finite, got {values[row].tolist()} in row {row} of {list(values.shape)}")


def _check_scores(scores, rows: Tensor, op: str, rows_name: str) -> Tensor:
    if not isinstance(scores, Tensor):
        raise TypeError(f"{op}: scores must be a Tensor, got {type(scores).__name__}")
    if not scores.is_floating_point():
        raise TypeError(f"{op}: scores must be a float tensor, got {scores.dtype}")
    if scores.dim() != 1 or scores.shape[0] != rows.shape[0]:
        raise ValueError(
            f"{op}: scores must be [N] with N = {rows.shape[0]} (the rows of {rows_name} "
            f"{list(rows.shape)}), got {list(scores.shape)}"
        )
    if scores.device != rows.device:
        raise ValueError(f"{op}: {rows_name} and scores must be on one device, got {rows.device} and {scores.device}")
    if bool(scores.isnan().any()):
        raise ValueError(f"{op}: scores must not be NaN (row {int(scores.isnan().nonzero()[0])})")
    return scores.detach()


def _check_threshold(value, op: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{op}: {name} must be a real number, got {type(value).__name__}")
    if math.isnan(value):
        raise ValueError(f"{op}: {name} must not be NaN")
    return float(value)


def _check_max_size(value, op: str, name: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{op}: {name} must be None or an int >= 0, got {value!r}")
    return value


if HAS_NATIVE:

    @torch.library.register_fake("sparse3d::bev_iou")
    def _(boxes_a, boxes_b):
        torch._check(boxes_a.dim() == 2 and boxes_a.shape[1] >= 7)
        torch._check(boxes_b.dim() == 2 and boxes_b.shape[1] >= 7)
        return boxes_a.new_empty(boxes_a.shape[0], boxes_b.shape[0], dtype=torch.float32)

    @torch.library.register_fake("sparse3d::rotated_nms")
    def _(boxes, scores, iou_threshold):
        torch._check(boxes.dim() == 2 and boxes.shape[1] >= 7)
        torch._check(scores.dim() == 1 and scores.shape[0] == boxes.shape[0])
        kept = torch.library.get_ctx().new_dynamic_size()
        return boxes.new_empty(kept, dtype=torch.int64)
