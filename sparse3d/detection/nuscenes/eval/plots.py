"""The nuScenes devkit's evaluation plots, as PNGs, from an evaluation's output folder.

Per class, a precision-recall plot (one curve per distance threshold) and a TP-error plot
(each TP error vs recall at the TP threshold); per threshold, the PR curves of all classes.
Same content as the devkit's ``NuScenesEval.render`` (its per-class and per-distance plots),
read back from ``metrics_summary.json`` and ``metrics_details.json``.

Needs matplotlib (imported only here; figures are drawn on the Agg canvas, so no display
is needed and pyplot's global state is left alone).

Examples:
    >>> evaluate_nuscenes("results.json", "/data/nuscenes", "v1.0-trainval", "val", "out/")
    >>> write_detection_plots("out/")  # out/plots/car_pr_curve.png, car_tp_curve.png, ...
"""

import io
import json
from pathlib import Path

import numpy as np

from sparse3d.detection.nuscenes.eval.config import TP_METRICS
from sparse3d.detection.nuscenes.eval.matching import ERROR_NAMES, MetricCurves
from sparse3d.io.atomic import write_bytes_atomic

PRETTY_NAMES = {"car": "Car", "truck": "Truck", "bus": "Bus", "trailer": "Trailer",
                "construction_vehicle": "Constr. Veh.", "pedestrian": "Pedestrian", "motorcycle": "Motorcycle",
                "bicycle": "Bicycle", "traffic_cone": "Traffic Cone", "barrier": "Barrier"}
"""Plot titles of the classes (the devkit's ``PRETTY_DETECTION_NAMES``)."""
_PRETTY_TP = {"trans_err": "Trans.", "scale_err": "Scale", "orient_err": "Orient.", "vel_err": "Vel.",
              "attr_err": "Attr."}
_TP_UNITS = {"trans_err": "m", "scale_err": "1-IOU", "orient_err": "rad.", "vel_err": "m/s", "attr_err": "1-acc."}
_GUIDE = {"linestyle": "--", "color": (0, 0, 0, 0.3)}


def write_detection_plots(eval_dir: str | Path, plot_dir: str | Path | None = None) -> list[Path]:
    """Plots an evaluation written by ``evaluate_nuscenes``.

    Args:
        eval_dir: the folder holding ``metrics_summary.json`` and ``metrics_details.json``.
        plot_dir: where the PNGs go (default ``eval_dir/plots``); each is written atomically.

    Returns:
        The PNGs written: ``{class}_pr_curve.png`` and ``{class}_tp_curve.png`` per class,
        then ``dist_pr_curve_{threshold}.png`` per distance threshold.

    Raises:
        ImportError: matplotlib is not installed.
        FileNotFoundError: a metrics file is missing.
    """
    eval_dir = Path(eval_dir)
    plot_dir = eval_dir / "plots" if plot_dir is None else Path(plot_dir)
    summary = json.loads((eval_dir / "metrics_summary.json").read_text())
    details = json.loads((eval_dir / "metrics_details.json").read_text())
    cfg = summary["cfg"]
    curves = {(name, float(th)): _curves(values)
              for key, values in details.items() for name, th in [key.rsplit(":", 1)]}
    written = []
    for name in cfg["class_range"]:
        for kind, draw in (("pr", _class_pr), ("tp", _class_tp)):
            fig = _figure()
            draw(fig.add_subplot(), name, curves, summary)
            written.append(_save(fig, plot_dir / f"{name}_{kind}_curve.png"))
    for th in cfg["dist_ths"]:
        written.append(_save(_dist_pr(name_order=list(cfg["class_range"]), th=float(th), curves=curves,
                                      summary=summary), plot_dir / f"dist_pr_curve_{th}.png"))
    return written


def _curves(values: dict[str, list[float]]) -> MetricCurves:
    keys = ("recall", "precision", "confidence") + ERROR_NAMES
    return MetricCurves(**{k: np.asarray(values[k], np.float64) for k in keys})


def _figure(figsize: tuple[float, float] = (6.4, 4.8)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_bytes_atomic(path, buf.getvalue())
    return path


def _setup_axis(ax, title=None, xlabel=None, ylabel=None, ylim=None, min_precision=None, min_recall=None):
    """The devkit's ``setup_axis``: no spines, large labels, dashed guides at the minima."""
    ax.tick_params(labelsize=16)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    if title is not None:
        ax.set_title(title, size=24)
    if xlabel is not None:
        ax.set_xlabel(xlabel, size=16)
    if ylabel is not None:
        ax.set_ylabel(ylabel, size=16)
    ax.set_xlim(0, 1)
    if ylim is not None:
        ax.set_ylim(0, ylim)
    if min_recall is not None:
        ax.axvline(x=min_recall, **_GUIDE)
    if min_precision is not None:
        ax.axhline(y=min_precision, **_GUIDE)


def _class_pr(ax, name: str, curves: dict, summary: dict) -> None:
    """Precision vs recall of one class, one curve per distance threshold."""
    cfg = summary["cfg"]
    _setup_axis(ax, PRETTY_NAMES.get(name, name), "Recall", "Precision", ylim=1,
                min_precision=cfg["min_precision"], min_recall=cfg["min_recall"])
    for th in cfg["dist_ths"]:
        c = curves[(name, float(th))]
        ap = summary["label_aps"][name][str(th)]
        ax.plot(c.recall, c.precision, label=f"Dist. : {th}, AP: {ap * 100:.1f}")
    ax.legend(loc="best")


def _class_tp(ax, name: str, curves: dict, summary: dict) -> None:
    """Each TP error vs recall of one class at the TP threshold, up to the highest recall
    reached; undefined errors (NaN in the summary) are listed as n/a."""
    cfg = summary["cfg"]
    c = curves[(name, float(cfg["dist_th_tp"]))]
    errors = summary["label_tp_errors"][name]
    first, last = round(100 * cfg["min_recall"]), c.max_recall_ind
    defined = [m for m in TP_METRICS if not np.isnan(errors[m])]
    ylimit = 1.0
    if first <= last and defined:
        ylimit = max(float(np.max(getattr(c, m)[first:last + 1])) for m in defined) * 1.1
        if not np.isfinite(ylimit) or ylimit <= 0:  # matplotlib rejects such limits
            ylimit = 1.0
    _setup_axis(ax, PRETTY_NAMES.get(name, name), "Recall", "Error", min_recall=cfg["min_recall"])
    ax.set_ylim(0, ylimit)
    for m in TP_METRICS:
        if np.isnan(errors[m]):
            recall, error, label = [], [], f"{_PRETTY_TP[m]}: n/a"
        elif first > last:
            recall, error, label = [], [], f"{_PRETTY_TP[m]}: nan"
        else:
            recall, error = c.recall[:last + 1], getattr(c, m)[:last + 1]
            label = f"{_PRETTY_TP[m]}: {errors[m]:.2f} ({_TP_UNITS[m]})"
        ax.plot(recall, error, label=label)
    ax.axvline(x=c.recall[last], linestyle="-.", color=(0, 0, 0, 0.3))
    ax.legend(loc="best")


def _dist_pr(name_order: list[str], th: float, curves: dict, summary: dict):
    """Precision vs recall of every class at one distance threshold, legend beside."""
    cfg = summary["cfg"]
    fig = _figure((7.5, 5))
    ax, lax = fig.subplots(ncols=2, gridspec_kw={"width_ratios": [4, 1]})
    _setup_axis(ax, xlabel="Recall", ylabel="Precision", ylim=1, min_precision=cfg["min_precision"],
                min_recall=cfg["min_recall"])
    for i, name in enumerate(name_order):
        c = curves[(name, th)]
        ap = summary["label_aps"][name][str(th)]
        ax.plot(c.recall, c.precision, label=f"{PRETTY_NAMES.get(name, name)}: {ap * 100:.1f}%", color=f"C{i}")
    handles, labels = ax.get_legend_handles_labels()
    lax.legend(handles, labels, borderaxespad=0)
    lax.axis("off")
    return fig
