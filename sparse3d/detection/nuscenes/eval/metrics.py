"""AP, TP errors and NDS from the metric curves, serialised like the devkit."""

import numpy as np

from sparse3d.detection.nuscenes.eval.config import TP_METRICS, DetectionConfig
from sparse3d.detection.nuscenes.eval.matching import MetricCurves

# TP errors that are undefined for a class: cones have no orientation, attribute or
# velocity; barriers no attribute or velocity.
_UNDEFINED_TP = {"traffic_cone": ("attr_err", "vel_err", "orient_err"), "barrier": ("attr_err", "vel_err")}


def calc_ap(curves: MetricCurves, min_recall: float, min_precision: float) -> float:
    """Average precision above ``min_recall`` (its own bin excluded), with precision below
    ``min_precision`` counted as 0 and the result rescaled to [0, 1]."""
    if not (0 <= min_precision < 1 and 0 <= min_recall <= 1):
        raise ValueError(
            f"calc_ap: need 0 <= min_precision < 1 and 0 <= min_recall <= 1, got {min_precision}, {min_recall}"
        )
    prec = np.copy(curves.precision)[round(100 * min_recall) + 1:]
    prec -= min_precision
    prec[prec < 0] = 0
    return float(np.mean(prec)) / (1.0 - min_precision)


def calc_tp(curves: MetricCurves, min_recall: float, metric_name: str) -> float:
    """Mean of a TP error curve from just above ``min_recall`` up to the highest recall
    reached (inclusive); 1.0 when that recall is not above ``min_recall``."""
    first = round(100 * min_recall) + 1
    last = curves.max_recall_ind
    if last < first:
        return 1.0
    return float(np.mean(getattr(curves, metric_name)[first: last + 1]))


def summarize(curves: dict[tuple[str, float], MetricCurves], config: DetectionConfig) -> dict:
    """The ``metrics_summary.json`` content (without ``eval_time`` and ``meta``).

    Args:
        curves: (class name, threshold) -> curves, for every class and threshold of the config.
        config: the evaluation config.

    Returns:
        dict with ``label_aps``, ``mean_dist_aps``, ``mean_ap``, ``label_tp_errors``,
        ``tp_errors``, ``tp_scores``, ``nd_score`` and ``cfg``, in the devkit's layout
        (threshold keys as strings, e.g. "0.5").
    """
    label_aps = {name: {str(th): calc_ap(curves[(name, th)], config.min_recall, config.min_precision)
                        for th in config.dist_ths} for name in config.class_names}
    label_tp_errors = {
        name: {metric: (np.nan if metric in _UNDEFINED_TP.get(name, ())
                        else calc_tp(curves[(name, config.dist_th_tp)], config.min_recall, metric))
               for metric in TP_METRICS}
        for name in config.class_names
    }
    mean_dist_aps = {name: float(np.mean(list(aps.values()))) for name, aps in label_aps.items()}
    mean_ap = float(np.mean(list(mean_dist_aps.values())))
    tp_errors = {m: float(np.nanmean([label_tp_errors[n][m] for n in config.class_names])) for m in TP_METRICS}
    # Clipping comes after averaging over classes: per-class errors above 1 count in full.
    tp_scores = {m: max(0.0, 1.0 - tp_errors[m]) for m in TP_METRICS}
    nd_score = float(config.mean_ap_weight * mean_ap + np.sum(list(tp_scores.values())))
    nd_score = nd_score / float(config.mean_ap_weight + len(tp_scores))
    return {"label_aps": label_aps, "mean_dist_aps": mean_dist_aps, "mean_ap": mean_ap,
            "label_tp_errors": label_tp_errors, "tp_errors": tp_errors, "tp_scores": tp_scores,
            "nd_score": nd_score, "cfg": config.serialize()}
