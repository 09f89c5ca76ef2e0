"""Benchmark: the native kernels in training-like loops with torch's OpenMP threads
spinning for libgomp's default and for sparse3d's setting (sparse3d/_env.py).

After every parallel torch op libgomp keeps its idle threads spinning for GOMP_SPINCOUNT
iterations (default 300,000) before they sleep; sparse3d sets 10,000 when it loads before
torch. The native kernels run on a pool of their own (cuda/cpu/parallel.h), which the
spinning threads hold off their cores. Workloads, each a loop of torch ops and native
kernels as training runs them:

    encoder   VoxelResBackBone8x forward + backward, train mode, on bench_sparse_conv's
              LiDAR scene (~95k voxels)
    strivec   one strivec training step's native ops (bench_strivec_ops' scene): march,
              box lookups, trivector features and volume weights, forward + backward
    raster    Gaussian rasterization forward + backward, 100,000 Gaussians at 256 x 256
              (bench_rasterizer's scene)

Each round runs every workload once per setting, each in a fresh process (libgomp reads
the variable when torch loads), the two settings alternately; a process times the median
of --repeats calls after one warm-up. The figure of a workload is the median over rounds
of (time at the default) / (time at sparse3d's setting): > 1, the setting is faster.

    python tools/bench_openmp_spin.py [--rounds 3] [--repeats 9] [--workloads encoder strivec raster] [--json PATH]

The last printed line is a one-line summary.
"""

import sparse3d  # noqa: F401, I001  (first: it sets torch's OpenMP spin before torch loads)
import argparse
import os
import statistics
import subprocess
import sys
from collections.abc import Callable

import torch
from bench_conv2d import seconds

from sparse3d._env import SPIN_COUNT
from sparse3d.io.atomic import write_json_atomic

LIBGOMP_DEFAULT = "300000"  # libgomp's GOMP_SPINCOUNT when neither it nor OMP_WAIT_POLICY is set
WORKLOADS = ("encoder", "strivec", "raster")


def encoder_step() -> Callable[[], object]:
    import bench_sparse_conv

    from sparse3d.core.sparse_voxels import SparseVoxels
    from sparse3d.nn.backbones.voxel_resnet import VoxelResBackBone8x

    x, _ = bench_sparse_conv.lidar_voxels(0)
    torch.manual_seed(0)
    encoder = VoxelResBackBone8x(5, (x.spatial_shape[2], x.spatial_shape[1], x.spatial_shape[0] - 1)).train()

    def step():
        out = encoder.forward_zyx(SparseVoxels(x.coords, x.feats, x.spatial_shape, 1, check=False)).encoded
        (out.feats * out.feats).sum().backward()

    return step


def strivec_step() -> Callable[[], object]:
    import bench_strivec_ops

    cases, _ = bench_strivec_ops.build_cases(bench_strivec_ops.make_scene(4096, 0), 65536, 0)
    calls = [case.train_native or case.fwd_native for case in cases]

    def step():
        for call in calls:
            call()

    return step


def raster_step() -> Callable[[], object]:
    import bench_rasterizer

    scene = bench_rasterizer.make_scene(100_000, 256)
    return lambda: bench_rasterizer.run(scene, 256, "native", backward=True)


def child(workload: str, repeats: int) -> float:
    """Median milliseconds of ``repeats`` calls of ``workload`` in this process."""
    step = {"encoder": encoder_step, "strivec": strivec_step, "raster": raster_step}[workload]()
    return 1e3 * statistics.median(seconds(step, repeats))


def timed_in_process(workload: str, spin: str, repeats: int) -> float:
    """``child`` in a fresh process with GOMP_SPINCOUNT = ``spin``."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | {"GOMP_SPINCOUNT": spin}
    run = subprocess.run([sys.executable, __file__, "--child", workload, "--repeats", str(repeats)],
                         env=env, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"{workload} at GOMP_SPINCOUNT={spin} failed:\n{run.stderr[-3000:]}")
    return float(run.stdout.strip().splitlines()[-1])


def main(args: argparse.Namespace) -> dict:
    load_before = os.getloadavg()[0]
    settings = {"default": LIBGOMP_DEFAULT, "sparse3d": SPIN_COUNT}
    ms = {w: {s: [] for s in settings} for w in args.workloads}
    for r in range(args.rounds):
        for w in args.workloads:
            for name, spin in settings.items():
                ms[w][name].append(timed_in_process(w, spin, args.repeats))
            print(f"round {r + 1}: {w:8s} default {ms[w]['default'][-1]:8.1f} ms   sparse3d {ms[w]['sparse3d'][-1]:8.1f} ms",
                  flush=True)
    summary = {"threads": torch.get_num_threads(), "load_before": load_before, "spin_counts": settings}
    for w in args.workloads:
        ratio = statistics.median(a / b for a, b in zip(ms[w]["default"], ms[w]["sparse3d"]))
        summary[w] = {"default_ms": statistics.median(ms[w]["default"]), "sparse3d_ms": statistics.median(ms[w]["sparse3d"]),
                      "speedup": ratio}
    if args.json:
        write_json_atomic(args.json, summary)
    parts = ", ".join(f"{w} {summary[w]['speedup']:.2f}x ({summary[w]['default_ms']:.1f} -> {summary[w]['sparse3d_ms']:.1f} ms)"
                      for w in args.workloads)
    print(f"summary: GOMP_SPINCOUNT {SPIN_COUNT} against libgomp's {LIBGOMP_DEFAULT} at {summary['threads']} threads: "
          f"{parts} (median of {args.rounds} rounds, load {summary['load_before']:.2f} before)")
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--json")
    parser.add_argument("--child", choices=WORKLOADS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(child(args.child, args.repeats))
    else:
        main(args)
