"""Per-box outcomes of the evaluation's matching (what the viewer colours), on a
hand-worked case: the score order, the tie rule, the same-sample rule, the class rule, the
distance threshold, the filters and the score threshold."""

import numpy as np

from sparse3d.data.nuscenes.classes import DETECTION_NAMES
from sparse3d.detection.nuscenes.box_set import EvalBoxSet
from sparse3d.detection.nuscenes.eval.config import DetectionConfig
from sparse3d.detection.nuscenes.eval.ground_truth import BikeRacks
from sparse3d.detection.nuscenes.eval.outcomes import (
    FALSE_NEGATIVE,
    FALSE_POSITIVE,
    IGNORED,
    TRUE_POSITIVE,
    match_boxes,
)

TP, FP, FN, IG = TRUE_POSITIVE, FALSE_POSITIVE, FALSE_NEGATIVE, IGNORED


def _boxes(rows):
    """rows: (sample, class name, (x, y), num_pts, score)."""
    n = len(rows)
    return EvalBoxSet(
        sample=np.array([r[0] for r in rows]), label=np.array([DETECTION_NAMES.index(r[1]) for r in rows]),
        translation=np.array([(*r[2], 0.0) for r in rows], float), size=np.ones((n, 3)),
        rotation=np.tile([1.0, 0, 0, 0], (n, 1)), velocity=np.zeros((n, 2)), attribute=np.full(n, -1),
        score=np.array([r[4] for r in rows], float), num_pts=np.array([r[3] for r in rows]),
    )


# Both samples have the ego at the origin.
GT = _boxes([
    (0, "car", (10, 0), 5, -1),         # g0: taken by p1, the higher score, though p0 is no farther than 2 m
    (0, "car", (20, 0), 5, -1),         # g1: p2 is 1.9 m away
    (0, "car", (60, 0), 5, -1),         # g2: beyond the car range (50 m)
    (0, "pedestrian", (5, 5), 0, -1),   # g3: no points
    (0, "pedestrian", (0, 10), 3, -1),  # g4: only a car is predicted there
    (1, "car", (30, 0), 2, -1),         # g5: two predictions tie; the later row goes first
])
PRED = _boxes([
    (0, "car", (10.5, 0), -1, 0.5),     # p0: g0 already taken
    (0, "car", (10.2, 0), -1, 0.9),     # p1
    (0, "car", (21.9, 0), -1, 0.3),     # p2
    (0, "car", (60.5, 0), -1, 0.8),     # p3: beyond range
    (0, "pedestrian", (20, 0), -1, 0.7),  # p4: on a car
    (0, "car", (0, 10), -1, 0.6),       # p5: on a pedestrian
    (1, "car", (30, 1), -1, 0.4),       # p6: 1 m from g5
    (1, "car", (30, -0.5), -1, 0.4),    # p7: 0.5 m from g5, same score, later row
    (0, "car", (30, 0), -1, 0.95),      # p8: on g5's spot, but in the other sample
])
NO_RACKS = BikeRacks(np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 4)))
EGO = np.zeros((2, 3))


def _outcomes(dist_th, min_score):
    matches = match_boxes(GT, PRED, EGO, NO_RACKS, DetectionConfig(), dist_th)
    gt, pred = matches.outcomes(min_score)
    return gt.tolist(), pred.tolist(), matches


def test_outcomes_at_two_metres():
    gt, pred, matches = _outcomes(2.0, 0.0)
    assert gt == [TP, TP, IG, IG, FN, TP]
    assert pred == [FP, TP, TP, IG, FP, FP, FP, TP, FP]
    assert matches.pred_gt.tolist() == [-1, 0, 1, -1, -1, -1, -1, 5, -1]
    assert matches.gt_found_by.tolist() == [0.9, 0.3, -np.inf, -np.inf, -np.inf, 0.4]


def test_a_score_threshold_drops_predictions_and_what_only_they_found():
    gt, pred, _ = _outcomes(2.0, 0.45)
    assert gt == [TP, FN, IG, IG, FN, FN]
    assert pred == [FP, TP, IG, IG, FP, FP, IG, IG, FP]


def test_a_tighter_distance_threshold():
    gt, pred, _ = _outcomes(1.0, 0.0)
    assert gt == [TP, FN, IG, IG, FN, TP]
    assert pred == [FP, TP, FP, IG, FP, FP, FP, TP, FP]
