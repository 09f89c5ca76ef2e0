"""Benchmark: sparse3d's nuScenes detection eval vs the official devkit, same process, same data.

Generates a synthetic nuScenes database and a mock submission (GT with noise, duplicates,
score ties, false positives), then times, on identical inputs,

- devkit:  ``NuScenes(version, dataroot)`` + ``NuScenesEval(...).main(render_curves=False)``
- sparse3d: ``evaluate_nuscenes(...)`` (loads the tables too, writes the same two files)

interleaved over ``--repeats`` runs (the median counts, as everywhere in the project), and
compares every number of the two ``metrics_summary.json`` files. The last printed line is a
one-line summary.

Usage:
    python tools/bench_nusc_eval.py [--scenes 10] [--samples 20] [--json out.json]
"""

import sparse3d  # noqa: F401, I001  (first: it sets torch's OpenMP spin before torch loads)
import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sparse3d.data.nuscenes.splits import scenes_of_split
from sparse3d.data.nuscenes.tables import NuScenesTables
from sparse3d.detection.nuscenes.eval import evaluate_nuscenes
from sparse3d.detection.nuscenes.eval.compare import max_abs_diff
from sparse3d.io.atomic import write_json_atomic
from sparse3d.synthetic.lidar import SpinningLidarConfig
from sparse3d.synthetic.nuscenes import NuScenesSynthConfig, write_synthetic_nuscenes
from sparse3d.synthetic.nuscenes_mock import mock_submission


def run_devkit(root: Path, version: str, split: str, results: Path, out: Path) -> dict:
    """The devkit's metrics_summary.json of ``results`` on a split (written into ``out``)."""
    from nuscenes import NuScenes
    from nuscenes.eval.detection.config import config_factory
    from nuscenes.eval.detection.evaluate import NuScenesEval

    # The devkit prints its own table and progress bars; keep the benchmark output readable.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        nusc = NuScenes(version, str(root), verbose=False)
        NuScenesEval(nusc, config_factory("detection_cvpr_2019"), str(results), split, str(out),
                     verbose=False).main(render_curves=False)
    return json.loads((out / "metrics_summary.json").read_text())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=10, help="scenes in the generated database")
    parser.add_argument("--samples", type=int, default=20, help="keyframes per scene")
    parser.add_argument("--objects", type=int, default=60, help="annotated objects per scene")
    parser.add_argument("--false-positives", type=float, default=200.0,
                        help="mean random low-quality boxes per sample (real detectors emit up to 500 per sample)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side (the median counts)")
    parser.add_argument("--workdir", type=str, default=None, help="where to generate (default: a temp folder)")
    parser.add_argument("--json", type=str, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)

    try:
        import nuscenes  # noqa: F401
    except ImportError:
        sys.exit("bench_nusc_eval: the reference needs nuscenes-devkit "
                 "(pip install -c constraints.txt nuscenes-devkit==1.2.0)")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        version, split = "v1.0-synth", "synth_all"
        t0 = time.perf_counter()
        # The eval never reads point clouds; a coarse sensor keeps generation quick while
        # still giving realistic num_lidar_pts (and so the zero-point filter) per box.
        config = NuScenesSynthConfig(seed=args.seed, num_scenes=args.scenes, samples_per_scene=args.samples,
                                     sweeps_per_sample=0, objects_per_scene=args.objects,
                                     lidar=SpinningLidarConfig(azimuth_steps=360))
        root = write_synthetic_nuscenes(work / "nusc", config)
        tables = NuScenesTables(root, version)
        tokens = tables.samples_of_scenes(scenes_of_split(root, version, split))
        submission = mock_submission(tables, tokens, seed=args.seed, false_positives_per_sample=args.false_positives)
        results = work / "results.json"
        write_json_atomic(results, submission, indent=None)
        n_boxes = sum(len(b) for b in submission["results"].values())
        print(f"data: {len(tokens)} samples, {len(tables.sample_annotation)} annotations, {n_boxes} predicted boxes "
              f"(generated in {time.perf_counter() - t0:.1f}s)")

        # "cold" parses the tables like the devkit does; "cached" reuses the split's GT
        # from a previous evaluation of the same, unchanged tables (evaluate_nuscenes'
        # cache_dir), the common case when evaluating checkpoints one after another.
        cache = work / "gt_cache"
        evaluate_nuscenes(results, root, version, split, None, cache_dir=cache)
        times = {"devkit": [], "sparse3d": [], "sparse3d_cached": []}
        diffs = []
        for r in range(args.repeats):
            t = time.perf_counter()
            reference = run_devkit(root, version, split, results, work / f"devkit{r}")
            times["devkit"].append(time.perf_counter() - t)
            t = time.perf_counter()
            ours = evaluate_nuscenes(results, root, version, split, work / f"ours{r}")
            times["sparse3d"].append(time.perf_counter() - t)
            t = time.perf_counter()
            cached = evaluate_nuscenes(results, root, version, split, work / f"cached{r}", cache_dir=cache)
            times["sparse3d_cached"].append(time.perf_counter() - t)
            written = json.loads((work / f"ours{r}" / "metrics_summary.json").read_text())
            diffs += [max_abs_diff(reference, ours), max_abs_diff(reference, written), max_abs_diff(reference, cached)]
            print(f"run {r}: devkit {times['devkit'][-1]:.3f}s  sparse3d {times['sparse3d'][-1]:.3f}s  "
                  f"sparse3d cached GT {times['sparse3d_cached'][-1]:.3f}s")
        diff = max(diffs)

    median = {k: statistics.median(v) for k, v in times.items()}
    report = {
        "samples": len(tokens), "pred_boxes": n_boxes, "devkit_s": median["devkit"], "sparse3d_s": median["sparse3d"],
        "sparse3d_cached_s": median["sparse3d_cached"], "speedup_vs_devkit": median["devkit"] / median["sparse3d"],
        "speedup_vs_devkit_cached": median["devkit"] / median["sparse3d_cached"], "max_abs_diff": diff,
        "nd_score": ours["nd_score"], "mean_ap": ours["mean_ap"],
    }
    print(f"{'median of ' + str(args.repeats):22}{'time (s)':>10}{'speedup':>10}")
    for name in ("devkit", "sparse3d", "sparse3d_cached"):
        print(f"{name:22}{median[name]:>10.3f}{median['devkit'] / median[name]:>9.1f}x")
    if args.json:
        write_json_atomic(args.json, report, indent=2)
    print(f"nusc eval: {report['speedup_vs_devkit']:.1f}x faster than devkit 1.2.0 "
          f"({report['speedup_vs_devkit_cached']:.1f}x with cached GT; {median['sparse3d']:.3f}s vs "
          f"{median['devkit']:.3f}s, {len(tokens)} samples, {n_boxes} boxes), max |diff| {diff:.1e}, "
          f"NDS {ours['nd_score']:.4f}")
    return report


if __name__ == "__main__":
    main()
