"""CenterHead predictions -> scored LiDAR-frame box candidates, before NMS (OpenPCDet
``centernet_utils.decode_bbox_from_heatmap`` as called by ``CenterHead.generate_predicted_boxes``).

NMS is the next step and is not done here: OpenPCDet runs a class-agnostic rotated BEV NMS
per head (classes of one head suppress each other, heads never do), on the top
NMS_PRE_MAXSIZE candidates of the head. The candidates of each head are therefore
returned separately, sorted by descending score, ready for that NMS; the heads' results
are concatenated after it.
"""

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from sparse3d.core.elementwise import sigmoid
from sparse3d.data.nuscenes.classes import DETECTION_NAMES
from sparse3d.detection.heads.center_head import (
    REGRESSION_HEADS,
    CenterHeadConfig,
    class_ids_each_head,
)
from sparse3d.detection.targets import BevGrid


class HeadDetections(NamedTuple):
    """Box candidates of one task group (head) in one sample, by descending score."""

    boxes: Tensor
    """float [n, 9] (x, y, z, dx, dy, dz, yaw, vx, vy), LiDAR frame."""
    scores: Tensor
    """float [n] sigmoid heatmap scores."""
    labels: Tensor
    """int64 [n] 0-based global class ids (indices into the detector's class names)."""


def decode_center_predictions(
    preds: list[dict[str, Tensor]], grid: BevGrid, config: CenterHeadConfig, class_names: Sequence[str] = DETECTION_NAMES
) -> list[list[HeadDetections]]:
    """Box candidates of CenterHead predictions, per sample and head, before NMS.

    Per head: scores = sigmoid(hm); the top K = ``config.max_obj_per_sample`` cells of each
    class, then the top K of those over the head's classes (K is capped at H * W and at
    n_cls * K, where the map is smaller). A pick at cell (ix, iy) gives
    x, y = ((ix, iy) + center) * stride * voxel + range min, z = center_z,
    (dx, dy, dz) = exp(dim), yaw = atan2(rot[1], rot[0]), (vx, vy) = vel. Candidates are
    kept if score > ``config.score_thresh`` (strict) and the centre lies in
    ``config.post_center_range`` (bounds included).

    Args:
        preds: :meth:`CenterHead.forward` output, one dict per head: ``center`` [B, 2, H, W],
            ``center_z`` [B, 1, H, W], ``dim`` [B, 3, H, W], ``rot`` [B, 2, H, W],
            ``vel`` [B, 2, H, W], ``hm`` [B, n_cls, H, W] logits.
        grid: the feature map the predictions are on.
        config: the head's config (class groups, K, thresholds).
        class_names: the detector's classes, as given to the head.

    Returns:
        per sample, per head (config order), a :class:`HeadDetections` sorted by descending
        score; run NMS on each head separately.
    """
    ids_each_head = class_ids_each_head(config, class_names)
    if len(preds) != len(ids_each_head):
        raise ValueError(f"decode_center_predictions: expected {len(ids_each_head)} heads, got {len(preds)}")
    per_head = [_decode_head(pred, ids, grid, config) for pred, ids in zip(preds, ids_each_head)]
    batch = len(per_head[0])
    return [[head[b] for head in per_head] for b in range(batch)]


def _decode_head(pred: dict[str, Tensor], class_ids: Sequence[int], grid: BevGrid, config: CenterHeadConfig) -> list[HeadDetections]:
    """One head's candidates for each sample of the batch."""
    heatmap = pred["hm"]
    batch, num_classes, height, width = heatmap.shape
    if num_classes != len(class_ids) or (height, width) != grid.shape:
        raise ValueError(
            f"decode_center_predictions: hm {list(heatmap.shape)} does not match {len(class_ids)} classes "
            f"on the {grid.shape} grid"
        )
    scores = sigmoid(heatmap).reshape(batch, num_classes, height * width)
    k_cells = min(config.max_obj_per_sample, height * width)
    class_scores, class_cells = scores.topk(k_cells, dim=2)  # [B, n_cls, k_cells] each
    k = min(config.max_obj_per_sample, num_classes * k_cells)
    top_scores, picks = class_scores.reshape(batch, -1).topk(k, dim=1)  # [B, k], descending
    cells = class_cells.reshape(batch, -1).gather(1, picks)  # [B, k] flat iy * W + ix
    labels = heatmap.new_tensor(list(class_ids), dtype=torch.int64)[picks // k_cells]

    box_maps = torch.cat([pred[name] for name, _ in REGRESSION_HEADS], dim=1).reshape(batch, -1, height * width)
    codes = box_maps.gather(2, cells[:, None, :].expand(-1, box_maps.shape[1], -1)).transpose(1, 2)  # [B, k, 10]
    cell_xy = torch.stack([cells % width, cells // width], dim=-1).to(codes.dtype)
    boxes = torch.cat(
        [
            grid.metres(cell_xy + codes[..., 0:2]),
            codes[..., 2:3],
            codes[..., 3:6].exp(),
            torch.atan2(codes[..., 7:8], codes[..., 6:7]),
            codes[..., 8:10],
        ],
        dim=-1,
    )  # [B, k, 9]

    limits = boxes.new_tensor(config.post_center_range)
    keep = (boxes[..., :3] >= limits[:3]).all(-1) & (boxes[..., :3] <= limits[3:]).all(-1) & (top_scores > config.score_thresh)
    return [HeadDetections(boxes[b, keep[b]], top_scores[b, keep[b]], labels[b, keep[b]]) for b in range(batch)]
