"""The nuScenes detection evaluation end to end: submission + database -> metric files.

Examples:
    >>> summary = evaluate_nuscenes("results.json", "/data/nuscenes", "v1.0-trainval", "val", "out/")
    >>> print(format_metrics_table(summary))
"""

import time
from pathlib import Path

import numpy as np

from sparse3d.data.nuscenes.classes import DETECTION_NAMES
from sparse3d.data.nuscenes.errors import NuScenesFormatError
from sparse3d.data.nuscenes.splits import is_official_split
from sparse3d.data.nuscenes.tables import NuScenesTables
from sparse3d.detection.nuscenes.box_set import EvalBoxSet
from sparse3d.detection.nuscenes.eval.config import DetectionConfig
from sparse3d.detection.nuscenes.eval.filters import filter_boxes
from sparse3d.detection.nuscenes.eval.ground_truth import load_split_ground_truth
from sparse3d.detection.nuscenes.eval.matching import MetricCurves, accumulate_class
from sparse3d.detection.nuscenes.eval.metrics import summarize
from sparse3d.detection.nuscenes.submission import load_submission, submission_to_boxes
from sparse3d.io.atomic import write_json_atomic


def evaluate_nuscenes(
    results_path: str | Path,
    dataroot: str | Path,
    version: str,
    split: str,
    out_dir: str | Path | None,
    config: DetectionConfig | None = None,
    db: NuScenesTables | None = None,
    cache_dir: str | Path | None = None,
) -> dict:
    """Scores a detection submission on a split, exactly as the official devkit does.

    Sample coverage follows the devkit: an official split needs exactly its samples in the
    submission (missing or extra samples are errors); a custom split (from
    ``<dataroot>/<version>/splits.json``) needs all of its samples and ignores others, so
    one submission over a whole database can be scored on several custom splits.

    Args:
        results_path: the submission JSON (global-frame boxes).
        dataroot: the nuScenes dataroot.
        version: the table folder, e.g. ``v1.0-trainval``.
        split: an official split (``val``, ``mini_val``, ...) or a custom split name.
        out_dir: where ``metrics_summary.json`` and ``metrics_details.json`` are written
            (atomically, in the devkit's format); None writes nothing.
        config: the eval config (default ``detection_cvpr_2019``).
        db: already loaded tables of ``dataroot`` / ``version`` (loaded if needed).
        cache_dir: keeps the split's GT there (``.npz``, keyed by the tables' sizes and
            modification times), so later evaluations skip parsing the tables; None
            disables the cache.

    Returns:
        The ``metrics_summary.json`` content: ``label_aps``, ``mean_dist_aps``, ``mean_ap``,
        ``label_tp_errors``, ``tp_errors``, ``tp_scores``, ``nd_score``, ``eval_time``,
        ``cfg``, ``meta``.

    Raises:
        NuScenesFormatError: bad database, split or submission (the message says which
            file, field and what was expected).
    """
    config = config or DetectionConfig()
    submission = load_submission(results_path, config.max_boxes_per_sample)
    truth = load_split_ground_truth(dataroot, version, split, cache_dir, db)
    sample_tokens = truth.sample_tokens
    pred_order = _prediction_sample_order(submission["results"], sample_tokens, split, str(results_path))
    pred = submission_to_boxes(submission["results"], pred_order, source=str(results_path))
    # Predictions index samples in submission order; GT in database order. Re-index the
    # predictions onto the GT's sample list (the row order, which breaks ties, is kept).
    position = {t: i for i, t in enumerate(sample_tokens)}
    pred = pred.with_samples(np.array([position[t] for t in pred_order], np.int64))

    start = time.time()  # like the devkit's eval_time: scoring only, not loading
    curves = evaluate_boxes(truth.boxes, pred, truth.ego_translation, truth.racks, config)
    summary = summarize(curves, config)
    summary = {**{k: v for k, v in summary.items() if k != "cfg"}, "eval_time": time.time() - start,
               "cfg": summary["cfg"], "meta": dict(submission["meta"])}
    if out_dir is not None:
        out = Path(out_dir)
        write_json_atomic(out / "metrics_summary.json", summary, indent=2)
        details = {f"{name}:{th}": c.serialize() for (name, th), c in curves.items()}
        # Same content as the devkit's file; written compactly because the indenting
        # encoder is pure Python and would dominate a fast evaluation.
        write_json_atomic(out / "metrics_details.json", details, indent=None)
    return summary


def evaluate_boxes(
    gt: EvalBoxSet, pred: EvalBoxSet, ego_translation: np.ndarray, racks, config: DetectionConfig
) -> dict[tuple[str, float], MetricCurves]:
    """Filters GT and predictions, then matches every class at every threshold.

    Args:
        gt, pred: unfiltered boxes on the same sample list.
        ego_translation: float64 [S, 3] per-sample ego position.
        racks: the samples' bike racks.
        config: the eval config.

    Returns:
        (class name, threshold) -> curves, in config order.
    """
    gt = filter_boxes(gt, ego_translation, racks, config)
    pred = filter_boxes(pred, ego_translation, racks, config)
    curves = {}
    for name in config.class_names:
        period = np.pi if name == "barrier" else 2 * np.pi
        per_th = accumulate_class(gt, pred, DETECTION_NAMES.index(name), config.dist_ths, period)
        curves.update({(name, th): per_th[th] for th in config.dist_ths})
    return curves


def _prediction_sample_order(results: dict, sample_tokens: list[str], split: str, source: str) -> list[str]:
    """The samples whose predictions are scored, in the order the devkit reads them."""
    wanted = set(sample_tokens)
    missing = [t for t in sample_tokens if t not in results]
    if missing:
        raise NuScenesFormatError(
            f"{source}: {len(missing)} sample(s) of split {split!r} are missing from 'results' "
            f"(e.g. {missing[:3]}); list every sample, with an empty list if it has no boxes"
        )
    if is_official_split(split):
        extra = [t for t in results if t not in wanted]
        if extra:
            raise NuScenesFormatError(
                f"{source}: {len(extra)} sample(s) in 'results' are not in split {split!r} (e.g. {extra[:3]})"
            )
        return list(results)
    return list(sample_tokens)

