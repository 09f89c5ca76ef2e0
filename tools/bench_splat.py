"""Image quality of `splat` (vanilla 3DGS) on the synthetic objects, dense and sparse.

For each object, trains `splat` on 32 views (dense: the 9 rig views plus 23 ring views)
and on the 4-view sparse split (or the splits given by --views), and evaluates on held-out ring views that neither uses
for training. The dense figure checks the renderer and optimiser end to end (goal:
>= 30 dB PSNR); the sparse one is the baseline that GaussianObject must beat.

Usage:
    python tools/bench_splat.py [--objects torus sphere] [--views 32 4] [--steps 6000] [--json out.json]
"""

import sparse3d  # noqa: F401, I001  (first: it sets torch's OpenMP spin before torch loads)
import argparse
import tempfile
import time
from pathlib import Path

import torch

from sparse3d.data.splits import write_split_file
from sparse3d.engine.distributed import World
from sparse3d.engine.registry import discover_methods
from sparse3d.engine.trainer import Trainer
from sparse3d.io.atomic import write_json_atomic
from sparse3d.synthetic.objects.generator import (
    SyntheticObjectsConfig,
    write_synthetic_objects,
)

RIG_VIEWS = 9  # the generator's training-candidate views come first
RING_VIEWS = 48


def write_dense_split(folder: Path) -> None:
    """sparse_32.txt (rig + every other ring view) and sparse_test.txt (the other ring views)."""
    ring = list(range(RIG_VIEWS, RIG_VIEWS + RING_VIEWS))
    write_split_file(folder / "sparse_32.txt", list(range(RIG_VIEWS)) + ring[0::2][:23])
    write_split_file(folder / "sparse_test.txt", ring[1::2])


def train_and_eval(folder: Path, out: Path, views: int, steps: int) -> dict:
    config = discover_methods()["splat"].default_config()
    config.data, config.output = folder, out
    config.datamanager.num_train_views = views
    config.trainer.max_steps, config.trainer.eval_every, config.trainer.progress = steps, 0, False
    start = time.perf_counter()
    trainer = Trainer(config, "splat", out, World())
    trainer.train()
    with torch.no_grad():
        report = trainer.method.get_eval_report(steps)
    return {
        "views": views,
        "psnr": report["psnr"],
        "ssim": report["ssim"],
        "psnr_inside_mask": report["psnr_inside_mask"],
        "ssim_inside_mask": report["ssim_inside_mask"],
        "num_gaussians": report["num_gaussians"],
        "train_seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", nargs="+", default=["torus", "sphere"])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--views", type=int, nargs="+", default=[32, 4], choices=[4, 6, 9, 32])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data_config = SyntheticObjectsConfig(
            objects=tuple(args.objects), resolution=args.resolution, num_test_views=RING_VIEWS
        )
        for folder in write_synthetic_objects(Path(tmp) / "objects", data_config):
            write_dense_split(folder)
            for views in args.views:
                row = {"object": folder.name, **train_and_eval(folder, Path(tmp) / f"{folder.name}-{views}", views, args.steps)}
                results.append(row)
                print(f"{row['object']:>10} {views:>2} views  PSNR {row['psnr']:6.2f}  SSIM {row['ssim']:.4f}  "
                      f"inside-mask PSNR {row['psnr_inside_mask']:6.2f}  {int(row['num_gaussians'])} Gaussians  "
                      f"{row['train_seconds']:.0f} s")
    means = {views: _mean([r["psnr"] for r in results if r["views"] == views]) for views in args.views}
    summary = {**{f"psnr_{v}_views": p for v, p in means.items()}, "steps": args.steps,
               "resolution": args.resolution, "results": results}
    if args.json:
        write_json_atomic(args.json, summary)
    print("splat: " + ", ".join(f"{v}-view PSNR {p:.2f} dB" for v, p in means.items())
          + f" (goal: >= 30 dB with 32 views), {args.steps} steps at {args.resolution}^2")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


if __name__ == "__main__":
    main()
