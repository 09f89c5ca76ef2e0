"""A readable text table of a ``metrics_summary.json``."""

from sparse3d.detection.nuscenes.eval.config import TP_METRICS

_SHORT_TP = {"trans_err": "mATE", "scale_err": "mASE", "orient_err": "mAOE", "vel_err": "mAVE", "attr_err": "mAAE"}
_CLASS_TP = {"trans_err": "ATE", "scale_err": "ASE", "orient_err": "AOE", "vel_err": "AVE", "attr_err": "AAE"}


def format_metrics_table(summary: dict) -> str:
    """Summary lines (mAP, the five mean TP errors, NDS) and a per-class table of AP and TP
    errors, as text. NaN (undefined) errors print as ``nan``.

    Args:
        summary: as returned by ``evaluate_nuscenes`` or read from ``metrics_summary.json``.
    """
    lines = [f"mAP:  {summary['mean_ap']:.4f}"]
    lines += [f"{_SHORT_TP[m]}: {summary['tp_errors'][m]:.4f}" for m in TP_METRICS]
    lines.append(f"NDS:  {summary['nd_score']:.4f}")
    if summary.get("eval_time") is not None:
        lines.append(f"Eval time: {summary['eval_time']:.2f}s")
    lines.append("")
    header = f"{'Object Class':<22}{'AP':>8}" + "".join(f"{_CLASS_TP[m]:>8}" for m in TP_METRICS)
    lines += [header, "-" * len(header)]
    for name, ap in summary["mean_dist_aps"].items():
        errors = summary["label_tp_errors"][name]
        lines.append(f"{name:<22}{ap:>8.3f}" + "".join(f"{errors[m]:>8.3f}" for m in TP_METRICS))
    return "\n".join(lines)
