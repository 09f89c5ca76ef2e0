"""Per-head non-maximum suppression of decoded box candidates (OpenPCDet's CenterHead
post-processing): each task group is suppressed on its own, class-agnostically within the
group, and the groups' survivors are concatenated (heads never suppress each other)."""

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from sparse3d.core.bev_nms import circle_nms, rotated_nms
from sparse3d.detection.decode import HeadDetections
from sparse3d.engine.config import at_least, between, check_ranges


@dataclass
class NmsConfig:
    """Suppression of each head's candidates (CenterPoint nuScenes values)."""

    kind: Literal["rotated", "circle"] = "rotated"
    """Rotated BEV IoU NMS (OpenPCDet's nms_gpu) or circle NMS on centre distances."""
    iou_threshold: float = field(default=0.2, metadata=between(0, 1))
    """kind=rotated: a candidate whose BEV IoU with a kept box exceeds this is dropped."""
    circle_radius: tuple[float, ...] = (4.0, 12.0, 10.0, 1.0, 0.85, 0.175)
    """kind=circle: per head, the squared centre distance (m^2) within which a candidate is
    dropped (``min_radius`` of mmdetection3d's CenterPoint nuScenes configs, six task groups)."""
    pre_max_size: int = field(default=1000, metadata=at_least(1))
    """Best-scored candidates of a head that take part."""
    post_max_size: int = field(default=83, metadata=at_least(1))
    """Kept boxes per head at most."""

    def __post_init__(self) -> None:
        check_ranges(self)


class Detections(NamedTuple):
    """A sample's detections."""

    boxes: Tensor
    """float [N, 9] (x, y, z, dx, dy, dz, yaw, vx, vy), LiDAR frame."""
    scores: Tensor
    """float [N]."""
    labels: Tensor
    """int64 [N] 0-based class ids."""


def suppress_heads(heads: list[HeadDetections], config: NmsConfig) -> Detections:
    """One sample's detections: each head's candidates (by descending score) suppressed on
    their own, then concatenated in head order.

    Raises:
        ValueError: kind=circle with fewer radii than heads.
    """
    if config.kind == "circle" and len(config.circle_radius) < len(heads):
        raise ValueError(f"NmsConfig.circle_radius: {len(heads)} heads need as many radii, got {config.circle_radius}")
    kept = []
    for t, head in enumerate(heads):
        if config.kind == "rotated":
            keep = rotated_nms(head.boxes, head.scores, config.iou_threshold, config.pre_max_size, config.post_max_size)
        else:
            top = head.scores.sort(descending=True, stable=True).indices[: config.pre_max_size]
            keep = top[circle_nms(head.boxes[top], head.scores[top], config.circle_radius[t], config.post_max_size)]
        kept.append(HeadDetections(head.boxes[keep], head.scores[keep], head.labels[keep]))
    return Detections(*(torch.cat(parts) for parts in zip(*kept)))
