"""4-view reconstruction quality of `gaussianobject` against `splat`, with ablations.

For each synthetic object (128 x 128, 4 input views, 16 held-out ring views that no run
trains on), trains in one process:

- `splat` on the 4 views (vanilla 3DGS, its defaults);
- `gaussianobject` (every stage);
- no_repair: gaussianobject without the repair stage (refinement on the inputs alone; it
  reuses the full run's hull and coarse stages, which it shares);
- no_hull: random initial points instead of the visual hull;
- no_floaters: no floater elimination.

no_hull and no_floaters are measured without the repair stage and compared with
no_repair (each removes one more stage), unless --full-ablations runs them with it.
Every PSNR is the GaussianObject protocol (render over white, unmasked, against the
ground truth over white by its mask), averaged over the ring views and then the objects.
Each run's squared error is also split (reconstruction.visibility) into what lies outside
the object's mask (phantom volume, floaters, a blurred silhouette), on surface that some
input view sees, and on surface that none sees, with the PSNR each share costs.

Usage:
    python tools/bench_gaussianobject.py [--objects sphere torus capsule] [--json out.json] [key=value ...]

Trailing key=value pairs override the gaussianobject config (e.g. coarse.steps=1000).
"""

import sparse3d  # noqa: F401, I001  (first: it sets torch's OpenMP spin before torch loads)
import argparse
import shutil
import tempfile
from pathlib import Path

import torch
from bench_runs import train_and_report

from sparse3d.io.atomic import write_json_atomic
from sparse3d.reconstruction.visibility import heldout_error_shares
from sparse3d.synthetic.objects.generator import (
    SyntheticObjectsConfig,
    write_synthetic_objects,
)

VIEWS = 4
ABLATIONS = {
    "no_repair": ["repair.kind=none"],
    "no_hull": ["coarse.use_hull=false"],
    "no_floaters": ["model.floaters=false"],
}


def train_and_eval(method: str, data: Path, out: Path, overrides: list[str]) -> dict:
    """Trains ``method`` on ``data`` into ``out``; returns the eval report's PSNR, SSIM,
    inside-mask PSNR, Gaussian count and wall-clock minutes, and the held-out error shares."""
    if method == "splat":
        overrides = [*overrides, f"datamanager.num_train_views={VIEWS}"]
    trainer, report, minutes = train_and_report(method, data, out, overrides)
    with torch.no_grad():
        shares = heldout_error_shares(trainer.method, trainer.method.data)
    return {"psnr": report["psnr"], "ssim": report["ssim"], "psnr_inside_mask": report["psnr_inside_mask"],
            "num_gaussians": report["num_gaussians"], "minutes": minutes,
            **{k: v for k, v in shares.items() if k.startswith(("share_", "psnr_without_"))}}


def bench_object(folder: Path, work: Path, overrides: list[str], full_ablations: bool) -> dict:
    """Every run of one object; prints one line per run."""
    rows = {"splat": train_and_eval("splat", folder, work / "splat", [])}
    rows["gaussianobject"] = train_and_eval("gaussianobject", folder, work / "gaussianobject", overrides)
    for name, ablation in ABLATIONS.items():
        out = work / name
        if name == "no_repair":  # shares the hull and coarse stages with the full run
            out.mkdir(parents=True)
            shutil.copy(work / "gaussianobject" / "hull.ply", out / "hull.ply")
            shutil.copytree(work / "gaussianobject" / "coarse", out / "coarse")
        extra = [] if name == "no_repair" or full_ablations else ABLATIONS["no_repair"]
        rows[name] = train_and_eval("gaussianobject", folder, out, [*overrides, *ablation, *extra])
    for name, row in rows.items():
        print(f"{folder.name:>10} {name:>15}  PSNR {row['psnr']:6.2f}  SSIM {row['ssim']:.4f}  "
              f"inside-mask PSNR {row['psnr_inside_mask']:6.2f}  {int(row['num_gaussians']):>6} Gaussians  "
              f"{row['minutes']:5.1f} min  error outside / seen / unseen {row['share_outside']:.0%} / "
              f"{row['share_seen']:.0%} / {row['share_unseen']:.0%}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", nargs="+", default=["sphere", "torus", "capsule"])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--full-ablations", action="store_true",
                        help="run no_hull and no_floaters with the repair stage (two more full pipelines per object)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the gaussianobject config")
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = SyntheticObjectsConfig(objects=tuple(args.objects), resolution=args.resolution, num_test_views=16)
        for folder in write_synthetic_objects(Path(tmp) / "objects", data):
            results[folder.name] = bench_object(folder, Path(tmp) / "runs" / folder.name, args.overrides, args.full_ablations)

    def mean(run: str, key: str = "psnr") -> float:
        return sum(r[run][key] for r in results.values()) / len(results)

    summary = {
        "psnr_splat": mean("splat"),
        "psnr_gaussianobject": mean("gaussianobject"),
        **{f"psnr_{name}": mean(name) for name in ABLATIONS},
        "gain_db": mean("gaussianobject") - mean("splat"),
        "repair_gain_db": mean("gaussianobject") - mean("no_repair"),
        "min_gain_db": min(r["gaussianobject"]["psnr"] - r["splat"]["psnr"] for r in results.values()),
        "minutes_per_object": mean("gaussianobject", "minutes"),
        **{f"{key}_gaussianobject": mean("gaussianobject", key) for key in
           ("share_outside", "share_seen", "share_unseen", "psnr_without_outside", "psnr_without_unseen")},
        "ablations_with_repair": args.full_ablations,
        "resolution": args.resolution,
        "overrides": args.overrides,
        "objects": results,
    }
    if args.json:
        write_json_atomic(args.json, summary)
    print(f"gaussianobject {summary['psnr_gaussianobject']:.2f} dB vs splat {summary['psnr_splat']:.2f} dB "
          f"(gain {summary['gain_db']:+.2f}, min {summary['min_gain_db']:+.2f}); no_repair {summary['psnr_no_repair']:.2f}, "
          f"no_hull {summary['psnr_no_hull']:.2f}, no_floaters {summary['psnr_no_floaters']:.2f} (repair gain "
          f"{summary['repair_gain_db']:+.2f}); {summary['minutes_per_object']:.1f} min per object")


if __name__ == "__main__":
    main()
