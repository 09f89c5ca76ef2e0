"""Many-view quality per parameter of `strivec` against the dense `tensorf` baseline.

For each synthetic object (128 x 128 by default, the 9 rig views plus --dense-views more
training views, 16 held-out ring views that no run trains on), trains in one process
`strivec` (coarse density grid, then the local tensors) and `tensorf` (TensoRF-VM) with
their defaults (the CPU presets, the same schedule and rate, both reading the objects'
Blender copy), and reports for each the held-out PSNR (render over white, unmasked,
against the anti-aliased image over white by its soft alpha, as NeRF-synthetic is
scored), the PSNR inside the object's coverage, the parameter count and the training
minutes (strivec's include its coarse stage). With --ops it also runs
tools/bench_strivec_ops.py's one-step measurement (the native ops against their torch
references) so that the JSON carries ``ops_speedup_vs_ref``.

Usage:
    python tools/bench_strivec.py [--objects torus capsule] [--dense-views 32] [--json out.json] [--ops]
                                  [--methods strivec tensorf] [key=value ...]

Trailing key=value pairs override both methods' configs (e.g. trainer.max_steps=1500).
The last printed line is a one-line summary.
"""

import sparse3d  # noqa: F401, I001  (first: it sets torch's OpenMP spin before torch loads)
import argparse
import importlib.util
import tempfile
from pathlib import Path

import torch
from bench_runs import train_and_report

from sparse3d.io.atomic import write_json_atomic
from sparse3d.synthetic.objects.generator import (
    SyntheticObjectsConfig,
    write_synthetic_objects,
)


def train_and_eval(method: str, data: Path, out: Path, overrides: list[str]) -> dict:
    """Trains ``method`` on ``data`` into ``out``; returns its held-out PSNR, SSIM,
    inside-mask PSNR, parameter count and wall-clock minutes."""
    _, report, minutes = train_and_report(method, data, out, overrides)
    return {"psnr": report["psnr"], "ssim": report["ssim"], "psnr_inside_mask": report["psnr_inside_mask"],
            "params": report["num_parameters"], "minutes": minutes}


def ops_speedup(threads: int) -> dict:
    """tools/bench_strivec_ops.py's one-step measurement, run in this process."""
    path = Path(__file__).with_name("bench_strivec_ops.py")
    spec = importlib.util.spec_from_file_location("bench_strivec_ops", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(module.parse_args(["--threads", str(threads)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", nargs="+", default=["torus", "capsule", "sphere"])
    parser.add_argument("--methods", nargs="+", default=["strivec", "tensorf"], choices=["strivec", "tensorf"])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--dense-views", type=int, default=32, help="training views beyond the 9 of the rig")
    parser.add_argument("--ops", action="store_true", help="also measure the native ops against their references")
    parser.add_argument("--json", type=Path)
    parser.add_argument("overrides", nargs="*", help="key=value overrides of both configs")
    args = parser.parse_args()

    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = SyntheticObjectsConfig(objects=tuple(args.objects), resolution=args.resolution, num_test_views=16,
                                      num_dense_views=args.dense_views)
        for folder in write_synthetic_objects(Path(tmp) / "objects", data):
            rows = results[folder.name] = {}
            for method in args.methods:
                row = rows[method] = train_and_eval(method, folder, Path(tmp) / "runs" / folder.name / method, args.overrides)
                print(f"{folder.name:>10} {method:>8}  PSNR {row['psnr']:6.2f}  SSIM {row['ssim']:.4f}  inside-mask PSNR "
                      f"{row['psnr_inside_mask']:6.2f}  {int(row['params']):>10,} parameters  {row['minutes']:5.1f} min", flush=True)

    def mean(method: str, key: str) -> float:
        return sum(r[method][key] for r in results.values()) / len(results)

    summary = {f"{key}_{method}": mean(method, field) for method in args.methods
               for key, field in (("psnr", "psnr"), ("psnr_inside_mask", "psnr_inside_mask"), ("params", "params"),
                                  ("minutes", "minutes"))}
    if {"strivec", "tensorf"} <= set(args.methods):
        summary["params_ratio"] = summary["params_strivec"] / summary["params_tensorf"]
        summary["psnr_gain_db"] = summary["psnr_strivec"] - summary["psnr_tensorf"]
    if args.ops:
        summary["ops_speedup_vs_ref"] = ops_speedup(torch.get_num_threads())["ops_speedup_vs_ref"]
    summary |= {"resolution": args.resolution, "dense_views": args.dense_views, "overrides": args.overrides,
                "objects": results}
    if args.json:
        write_json_atomic(args.json, summary)
    line = "; ".join(f"{m} {summary[f'psnr_{m}']:.2f} dB, {summary[f'params_{m}'] / 1e6:.2f} M parameters, "
                     f"{summary[f'minutes_{m}']:.1f} min" for m in args.methods)
    if "params_ratio" in summary:
        line += f"; strivec/tensorf parameters {summary['params_ratio']:.2f}"
    if "ops_speedup_vs_ref" in summary:
        line += f"; native ops {summary['ops_speedup_vs_ref']:.1f}x their references"
    print(f"{line} (mean over {len(results)} objects)")


if __name__ == "__main__":
    main()
