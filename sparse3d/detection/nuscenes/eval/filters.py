"""The devkit's box filters: class range, empty boxes and cycles parked in bike racks."""

import numpy as np

from sparse3d.data.nuscenes.classes import DETECTION_NAMES
from sparse3d.detection.nuscenes.box_set import EvalBoxSet, same_sample_pairs
from sparse3d.detection.nuscenes.eval.config import DetectionConfig
from sparse3d.detection.nuscenes.eval.ground_truth import BikeRacks
from sparse3d.geometry.rotations import rotmats_from_quats

_CYCLES = np.array([DETECTION_NAMES.index("bicycle"), DETECTION_NAMES.index("motorcycle")])


def ego_distances(boxes: EvalBoxSet, ego_translation: np.ndarray) -> np.ndarray:
    """xy distance of each box centre to its sample's ego position: float64 [N]."""
    dx = boxes.translation[:, 0] - ego_translation[boxes.sample, 0]
    dy = boxes.translation[:, 1] - ego_translation[boxes.sample, 1]
    return np.sqrt(dx ** 2 + dy ** 2)


def filter_boxes(
    boxes: EvalBoxSet, ego_translation: np.ndarray, racks: BikeRacks, config: DetectionConfig
) -> EvalBoxSet:
    """Keeps the boxes the evaluation scores (:func:`scored_boxes`), in their order."""
    return boxes.select(scored_boxes(boxes, ego_translation, racks, config))


def scored_boxes(boxes: EvalBoxSet, ego_translation: np.ndarray, racks: BikeRacks, config: DetectionConfig) -> np.ndarray:
    """bool [N]: whether the evaluation scores each box.

    A box is dropped when its xy ego distance is not strictly below its own class's range,
    when its ``num_pts`` is exactly 0, or when it is a bicycle / motorcycle whose 3D centre
    lies in a bike rack of its sample (bounds inclusive).

    Args:
        boxes: GT or predictions.
        ego_translation: float64 [S, 3] per-sample ego position.
        racks: bike racks of the samples.
        config: gives the class ranges.
    """
    ranges = np.array([config.class_range[name] for name in DETECTION_NAMES], np.float64)
    keep = ego_distances(boxes, ego_translation) < ranges[boxes.label]
    keep &= boxes.num_pts != 0
    keep &= ~_in_bike_rack(boxes, racks)
    return keep


def _in_bike_rack(boxes: EvalBoxSet, racks: BikeRacks) -> np.ndarray:
    """bool [N]: cycle boxes whose centre is inside a rack of the same sample."""
    inside = np.zeros(len(boxes), bool)
    cycles = np.flatnonzero(np.isin(boxes.label, _CYCLES))
    if len(cycles) == 0 or len(racks.sample) == 0:
        return inside
    pair_box, pair_rack = same_sample_pairs(boxes.sample[cycles], racks.sample)
    if len(pair_box) == 0:
        return inside
    hit = _centre_in_box(boxes.translation[cycles[pair_box]], racks.translation[pair_rack],
                         racks.size[pair_rack], racks.rotation[pair_rack])
    inside[cycles[pair_box[hit]]] = True
    return inside


def _centre_in_box(points: np.ndarray, centres: np.ndarray, sizes_wlh: np.ndarray, quats: np.ndarray) -> np.ndarray:
    """Per pair, whether the point lies in the box, bounds inclusive, tested like the devkit:
    projections onto three box edges from one corner.

    Args:
        points, centres: float64 [Q, 3]; sizes_wlh: float64 [Q, 3]; quats: float64 [Q, 4].

    Returns:
        bool [Q].
    """
    rot = rotmats_from_quats(quats)  # [Q, 3, 3]
    width, length, height = sizes_wlh[:, 0], sizes_wlh[:, 1], sizes_wlh[:, 2]

    def corner(sx, sy, sz):
        local = np.stack([sx * length / 2, sy * width / 2, sz * height / 2], -1)
        return np.einsum("qij,qj->qi", rot, local) + centres

    p1 = corner(1, 1, 1)
    edges = [corner(-1, 1, 1) - p1, corner(1, -1, 1) - p1, corner(1, 1, -1) - p1]
    v = points - p1
    inside = np.ones(len(points), bool)
    for e in edges:
        proj = (e * v).sum(-1)
        inside &= (proj >= 0) & (proj <= (e * e).sum(-1))
    return inside
