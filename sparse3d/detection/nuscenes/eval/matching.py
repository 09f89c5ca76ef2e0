"""Greedy matching of predictions to GT and the per-class metric curves.

Per class and distance threshold, predictions are visited by descending score (ties:
higher original index first), each taking the nearest not-yet-taken GT of its sample if
the xy centre distance is strictly below the threshold. The curves are the devkit's:
raw (non-monotone) precision linearly interpolated at 101 recall points, and TP errors
as cumulative means over matches interpolated over confidence.

Speed: the (prediction, GT) candidate pairs of a class are built once, vectorised, with
their distances, and sorted by (prediction rank, distance, GT order); the sequential
greedy pass then only walks short candidate lists, for all four thresholds.
"""

from dataclasses import dataclass

import numpy as np

from sparse3d.detection.nuscenes.box_set import EvalBoxSet, same_sample_pairs
from sparse3d.detection.nuscenes.eval.tp_errors import (
    attribute_accuracy,
    center_distance,
    cummean,
    heading_diff,
    scale_iou,
    velocity_l2,
)
from sparse3d.geometry.rotations import quaternion_yaw

NUM_POINTS = 101
"""Points on every metric curve (recall 0 to 1 in steps of 0.01)."""
ERROR_NAMES = ("trans_err", "vel_err", "scale_err", "orient_err", "attr_err")
"""The TP error curves, in the devkit's serialisation order."""


@dataclass(frozen=True)
class MetricCurves:
    """The curves of one (class, distance threshold): float64 [101] each."""

    recall: np.ndarray
    precision: np.ndarray
    confidence: np.ndarray
    trans_err: np.ndarray
    vel_err: np.ndarray
    scale_err: np.ndarray
    orient_err: np.ndarray
    attr_err: np.ndarray

    @staticmethod
    def no_predictions() -> "MetricCurves":
        """Curves of a class without GT or without any match: AP 0 and every error 1."""
        ones = np.ones(NUM_POINTS)
        return MetricCurves(np.linspace(0, 1, NUM_POINTS), np.zeros(NUM_POINTS), np.zeros(NUM_POINTS),
                            ones, ones.copy(), ones.copy(), ones.copy(), ones.copy())

    @property
    def max_recall_ind(self) -> int:
        """Index of the last non-zero confidence (0 if none): the highest recall reached."""
        nonzero = np.flatnonzero(self.confidence)
        return int(nonzero[-1]) if len(nonzero) else 0

    def serialize(self) -> dict[str, list[float]]:
        """As the devkit writes it into ``metrics_details.json``."""
        keys = ("recall", "precision", "confidence") + ERROR_NAMES
        return {k: getattr(self, k).tolist() for k in keys}


def accumulate_class(
    gt: EvalBoxSet, pred: EvalBoxSet, label: int, dist_ths: tuple[float, ...], orientation_period: float
) -> dict[float, MetricCurves]:
    """Matches one class at every threshold and builds its curves.

    Args:
        gt, pred: filtered boxes of all classes (rows in evaluation order).
        label: the class index.
        dist_ths: matching thresholds (metres).
        orientation_period: pi for barriers (symmetric), 2 pi otherwise.

    Returns:
        threshold -> curves.
    """
    gt_rows = np.flatnonzero(gt.label == label)
    if len(gt_rows) == 0:
        return {th: MetricCurves.no_predictions() for th in dist_ths}
    matches = match_class(gt, pred, label, dist_ths)
    scores = pred.score[matches.pred_rows]
    # Headings once per class rather than per threshold: the same bits, as yaw is elementwise.
    yaws = quaternion_yaw(gt.rotation[gt_rows]), quaternion_yaw(pred.rotation[matches.pred_rows])
    return {th: _curves(gt, pred, gt_rows, matches.pred_rows, scores, yaws, *matches.matched[th], orientation_period)
            for th in dist_ths}


@dataclass(frozen=True)
class ClassMatches:
    """The greedy matching of one class's predictions to its GT, at several thresholds."""

    pred_rows: np.ndarray
    """int64 [P] the class's prediction rows in matching order (descending score, ties to
    the higher row)."""
    gt_rows: np.ndarray
    """int64 [G] the class's GT rows, in row order."""
    matched: dict[float, tuple[np.ndarray, np.ndarray]]
    """threshold -> (int64 [P] position in ``gt_rows`` of each prediction's GT, -1 for a
    false positive; float64 [P] its xy centre distance, NaN for a false positive)."""


def match_class(gt: EvalBoxSet, pred: EvalBoxSet, label: int, dist_ths: tuple[float, ...]) -> ClassMatches:
    """Matches the predictions of class ``label`` to its GT at each threshold, as the
    evaluation does (module docstring).

    Args:
        gt, pred: filtered boxes of all classes (rows in evaluation order).
        label: the class index.
        dist_ths: matching thresholds (metres).
    """
    gt_rows = np.flatnonzero(gt.label == label)
    pred_rows = np.flatnonzero(pred.label == label)
    # Ascending by (score, index), reversed: descending scores, ties to the higher index.
    pred_rows = pred_rows[np.lexsort((np.arange(len(pred_rows)), pred.score[pred_rows]))[::-1]]
    cand_ptr, cand_gt, cand_dist = _candidates(gt, pred, gt_rows, pred_rows, max(dist_ths))
    # Python lists: the greedy pass reads them element by element, where numpy scalars are slow.
    lists = cand_ptr.tolist(), cand_gt.tolist(), cand_dist.tolist()
    matched = {th: _greedy_match(cand_ptr, cand_dist, lists, th, len(gt_rows)) for th in dist_ths}
    return ClassMatches(pred_rows, gt_rows, matched)


def _candidates(gt: EvalBoxSet, pred: EvalBoxSet, gt_rows: np.ndarray, pred_rows: np.ndarray, max_dist: float):
    """Same-sample (prediction, GT) pairs closer than ``max_dist``, as CSR lists.

    Returns:
        ptr: int64 [P + 1]; gt: int64 [Q] GT position within ``gt_rows``; dist: float64 [Q]
        xy centre distance. Each prediction's list is sorted by (distance, GT order).
    """
    pair_pred, pair_gt = same_sample_pairs(pred.sample[pred_rows], gt.sample[gt_rows])
    dist = center_distance(pred.translation[pred_rows[pair_pred]], gt.translation[gt_rows[pair_gt]])
    near = dist < max_dist
    pair_pred, pair_gt, dist = pair_pred[near], pair_gt[near], dist[near]
    sort = np.lexsort((pair_gt, dist, pair_pred))
    pair_pred, pair_gt, dist = pair_pred[sort], pair_gt[sort], dist[sort]
    ptr = np.zeros(len(pred_rows) + 1, np.int64)
    np.cumsum(np.bincount(pair_pred, minlength=len(pred_rows)), out=ptr[1:])
    return ptr, pair_gt, dist


def _greedy_match(ptr: np.ndarray, cand_dist: np.ndarray, lists: tuple[list, list, list], dist_th: float, n_gt: int):
    """Visits predictions in rank order; each takes its nearest untaken GT within ``dist_th``.

    Args:
        ptr, cand_dist: the candidates (:func:`_candidates`); lists: (ptr, gt, dist) as lists.

    Returns:
        matched_gt: int64 [P] GT position per prediction, -1 for a false positive.
        match_dist: float64 [P] distance of the match (NaN for false positives).
    """
    n_pred = len(ptr) - 1
    # A prediction without a candidate within the threshold is a false positive whatever
    # came before it; only the others (in a dense false-positive field, a few) need the
    # sequential pass, which keeps their rank order.
    with_candidates = np.flatnonzero(ptr[1:] > ptr[:-1])
    active = with_candidates[cand_dist[ptr[with_candidates]] < dist_th]
    ptr_l, gt_l, dist_l = lists
    taken = bytearray(n_gt)
    hits_pred, hits_gt, hits_dist = [], [], []
    for p in active.tolist():
        for c in range(ptr_l[p], ptr_l[p + 1]):
            if dist_l[c] >= dist_th:
                break
            g = gt_l[c]
            if not taken[g]:
                taken[g] = 1
                hits_pred.append(p)
                hits_gt.append(g)
                hits_dist.append(dist_l[c])
                break
    matched = np.full(n_pred, -1, np.int64)
    match_dist = np.full(n_pred, np.nan)
    matched[hits_pred] = hits_gt
    match_dist[hits_pred] = hits_dist
    return matched, match_dist


def _curves(gt, pred, gt_rows, pred_rows, scores, yaws, matched, match_dist, orientation_period) -> MetricCurves:
    is_tp = matched >= 0
    if not is_tp.any():
        return MetricCurves.no_predictions()
    tp = np.cumsum(is_tp).astype(float)
    fp = np.cumsum(~is_tp).astype(float)
    prec = tp / (fp + tp)
    rec = tp / float(len(gt_rows))
    rec_interp = np.linspace(0, 1, NUM_POINTS)
    prec = np.interp(rec_interp, rec, prec, right=0)
    conf = np.interp(rec_interp, rec, scores, right=0)

    g = gt_rows[matched[is_tp]]
    p = pred_rows[is_tp]
    match_conf = scores[is_tp]
    errors = {
        "trans_err": match_dist[is_tp],
        "vel_err": velocity_l2(gt.velocity[g], pred.velocity[p]),
        "scale_err": 1 - scale_iou(gt.size[g], pred.size[p]),
        "orient_err": heading_diff(yaws[0][matched[is_tp]], yaws[1][is_tp], orientation_period),
        "attr_err": 1 - attribute_accuracy(gt.attribute[g], pred.attribute[p]),
    }
    curves = {name: np.interp(conf[::-1], match_conf[::-1], cummean(errors[name])[::-1])[::-1] for name in ERROR_NAMES}
    return MetricCurves(recall=rec_interp, precision=prec, confidence=conf, **curves)
