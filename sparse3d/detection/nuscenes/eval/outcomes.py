"""Per-box outcomes of the evaluation's matching: which predictions are true or false
positives and which GT boxes are found or missed, at one distance threshold and one score
threshold (an operating point of the detector).

The matching is the evaluation's own (:func:`match_class`, on the boxes its filters
keep), so a box coloured "true positive" in the viewer is one the evaluation counts as a
match. Because predictions are matched in descending score order, dropping the
predictions below a score threshold does not change the matches of the others: a GT box is
found at threshold s exactly when the prediction that took it scores at least s. So one
matching serves every score threshold.
"""

from dataclasses import dataclass

import numpy as np

from sparse3d.data.nuscenes.classes import DETECTION_NAMES
from sparse3d.detection.nuscenes.box_set import EvalBoxSet
from sparse3d.detection.nuscenes.eval.config import DetectionConfig
from sparse3d.detection.nuscenes.eval.filters import scored_boxes
from sparse3d.detection.nuscenes.eval.ground_truth import BikeRacks
from sparse3d.detection.nuscenes.eval.matching import match_class

TRUE_POSITIVE, FALSE_POSITIVE, FALSE_NEGATIVE, IGNORED = 0, 1, 2, 3
"""Outcome codes; IGNORED marks boxes the evaluation's filters drop (beyond the class
range, without points, cycles in a bike rack), and predictions below the score threshold."""
OUTCOME_NAMES = ("true positive", "false positive", "false negative", "ignored")
"""Name of each outcome code."""


@dataclass(frozen=True)
class BoxMatches:
    """The evaluation's matching of every prediction and GT box, at one distance threshold."""

    gt_scored: np.ndarray
    """bool [G] whether the evaluation scores each GT box."""
    pred_scored: np.ndarray
    """bool [P] whether the evaluation scores each prediction."""
    pred_gt: np.ndarray
    """int64 [P] GT row each prediction matched, -1 for none."""
    gt_found_by: np.ndarray
    """float64 [G] score of the prediction that matched each GT box, -inf for none."""
    pred_score: np.ndarray
    """float64 [P] prediction scores."""

    def outcomes(self, min_score: float) -> tuple[np.ndarray, np.ndarray]:
        """Outcome codes with only the predictions scoring at least ``min_score``.

        Returns:
            gt: int8 [G] TRUE_POSITIVE (found), FALSE_NEGATIVE or IGNORED.
            pred: int8 [P] TRUE_POSITIVE, FALSE_POSITIVE or IGNORED.
        """
        gt = np.where(self.gt_found_by >= min_score, TRUE_POSITIVE, FALSE_NEGATIVE).astype(np.int8)
        gt[~self.gt_scored] = IGNORED
        pred = np.where(self.pred_gt >= 0, TRUE_POSITIVE, FALSE_POSITIVE).astype(np.int8)
        pred[~self.pred_scored | (self.pred_score < min_score)] = IGNORED
        return gt, pred


def match_boxes(
    gt: EvalBoxSet, pred: EvalBoxSet, ego_translation: np.ndarray, racks: BikeRacks, config: DetectionConfig,
    dist_th: float,
) -> BoxMatches:
    """Filters and matches every class as the evaluation does, keeping each box's row.

    Args:
        gt, pred: unfiltered boxes on the same sample list (rows in evaluation order).
        ego_translation: float64 [S, 3] per-sample ego position.
        racks: the samples' bike racks.
        config: the eval config (class ranges, classes).
        dist_th: the xy centre distance below which a prediction may match (metres).
    """
    gt_scored = scored_boxes(gt, ego_translation, racks, config)
    pred_scored = scored_boxes(pred, ego_translation, racks, config)
    gt_kept, pred_kept = np.flatnonzero(gt_scored), np.flatnonzero(pred_scored)
    gt_f, pred_f = gt.select(gt_kept), pred.select(pred_kept)
    pred_gt = np.full(len(pred), -1, np.int64)
    gt_found_by = np.full(len(gt), -np.inf)
    for name in config.class_names:
        matches = match_class(gt_f, pred_f, DETECTION_NAMES.index(name), (dist_th,))
        matched, _ = matches.matched[dist_th]
        hit = matched >= 0
        pred_rows = pred_kept[matches.pred_rows[hit]]
        gt_rows = gt_kept[matches.gt_rows[matched[hit]]]
        pred_gt[pred_rows] = gt_rows
        gt_found_by[gt_rows] = pred.score[pred_rows]
    return BoxMatches(gt_scored, pred_scored, pred_gt, gt_found_by, pred.score.astype(np.float64))
