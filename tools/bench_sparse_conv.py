"""Benchmark: sparse3d's CPU sparse convolution against spconv 2.x's CPU build, side by side.

Scene: a spinning 32-beam LiDAR (sparse3d.synthetic.lidar; HDL-32E-like, 2170 firings per
revolution at 10 Hz) ray-cast against a street of boxes (ground, vehicles, pedestrians,
poles, facades), 10 sweeps with the ego moving at 15 m/s (1.5 m per sweep), merged in the
last sweep's frame with (x, y, z, intensity, dt) per point; mean-voxelized on the nuScenes
grid (0.075 x 0.075 x 0.2 m over [-54, -54, -5, 54, 54, 3]: 1440 x 1440 x 40 cells), which
gives ~95k voxels.

Timed (median and min of interleaved repeats; sparse3d at --threads, spconv at 1 thread
because its CPU build returns wrong rows at 2 threads, which the run also shows; with
--background-load N, every case twice: on the machine as it is, then beside N busy
processes that the benchmark starts and stops itself):
  * SubM 3x3x3 kernel-map construction;
  * SubMConv3d C -> C (C = 16, 32, 64), forward and forward + backward, maps cached;
  * SparseConv3d 16 -> 32, k3 s2 p1, forward including its kernel map;
  * the whole VoxelResBackBone8x encoder (train-mode BatchNorm, because spconv's CPU build
    asserts on biased convs in eval mode), forward and forward + backward, maps included.
spconv's backward needs sparse3d.nn.spconv_compat.patch_spconv_cpu_stream under a CPU-only
torch (it asks torch.cuda for a stream before taking its CPU branch).

GFLOP/s count only real taps: 2 * pairs * Cin * Cout per forward (x3 for forward + backward).

Peak memory: the encoder's first forward and forward + backward, each side in a fresh
process, as the growth of the peak resident set (VmHWM) over the resident set before the
call.

    python tools/bench_sparse_conv.py [--repeats 5] [--threads 2] [--background-load N] [--json out.json]

The last printed line is a one-line summary of the headline figures.
"""

import sparse3d  # noqa: F401, I001  (first: it sets torch's OpenMP spin before torch loads)
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from background_load import background_load

from sparse3d.core.kernel_map import kernel_map
from sparse3d.core.precision import bf16_dot_products
from sparse3d.core.sparse_voxels import SparseVoxels
from sparse3d.core.voxelize import voxelize
from sparse3d.nn.backbones.voxel_resnet import VoxelResBackBone8x
from sparse3d.nn.conv import SparseConv3d, SubMConv3d
from sparse3d.nn.spconv_compat import patch_spconv_cpu_stream, spconv_voxel_res_backbone
from sparse3d.synthetic.lidar import SpinningLidarConfig, simulate_sweeps, street_scene

PC_RANGE = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0)
VOXEL_SIZE = (0.075, 0.075, 0.2)
SENSOR_HEIGHT = 1.84
SWEEPS = 10
AZIMUTH_STEPS = 2170  # firings per revolution (0.166 deg)
SWEEP_DT = 0.1  # seconds between sweeps (10 Hz)
EGO_STEP = 1.5  # metres per sweep (15 m/s)


def lidar_points(seed: int = 0) -> np.ndarray:
    """float32 [P, 5] (x, y, z, intensity, dt) of 10 sweeps in the last sweep's frame."""
    config = SpinningLidarConfig(azimuth_steps=AZIMUTH_STEPS)
    return simulate_sweeps(street_scene(seed=seed), SWEEPS, SWEEP_DT, EGO_STEP, SENSOR_HEIGHT, config, seed)


def lidar_voxels(seed: int = 0) -> tuple[SparseVoxels, int]:
    """Mean-voxelized scene as (batch, x, y, z) SparseVoxels on the 1440 x 1440 x 40 grid,
    in a shuffled (seeded) order, and the point count."""
    points = torch.from_numpy(lidar_points(seed))
    v = voxelize(points, PC_RANGE, VOXEL_SIZE, "mean")
    order = torch.randperm(v.coords.shape[0], generator=torch.Generator().manual_seed(seed))
    return SparseVoxels(v.coords[order].contiguous(), v.feats[order].contiguous(), v.grid_shape, 1), points.shape[0]


# JSON key of each headline ratio -> its case.
HEADLINES = {"kernel_map_speedup": "SubM k3 kernel map", "encoder_fwd_speedup": "VoxelResBackBone8x fwd",
             "encoder_fwd_bwd_speedup": "VoxelResBackBone8x fwd+bwd"}


@dataclass
class Timing:
    median: float
    min: float


def _timed(fn: Callable[[], object], threads: int) -> float:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(ours: Callable, theirs: Callable | None, threads: int, repeats: int, their_threads: int = 1,
                warmup: int = 1):
    """Runs ours (at `threads`) and theirs (at `their_threads`) alternately; returns their Timings."""
    for _ in range(warmup):
        _timed(ours, threads)
        if theirs is not None:
            _timed(theirs, their_threads)
    a, b = [], []
    for _ in range(repeats):
        a.append(_timed(ours, threads))
        if theirs is not None:
            b.append(_timed(theirs, their_threads))
    summary = lambda t: Timing(statistics.median(t), min(t)) if t else None  # noqa: E731
    return summary(a), summary(b)


@dataclass
class Measured:
    """One case's Timings (ours, theirs or None) as the machine is, and beside the
    --background-load processes (None without them)."""

    as_is: tuple
    loaded: tuple | None


def measure(ours: Callable, theirs: Callable | None, args, repeats: int | None = None, their_threads: int = 1) -> Measured:
    """Interleaved timings of a case, then again beside ``args.background_load`` busy processes."""
    repeats = repeats or args.repeats
    as_is = interleaved(ours, theirs, args.threads, repeats, their_threads)
    if not args.background_load:
        return Measured(as_is, None)
    with background_load(args.background_load):
        return Measured(as_is, interleaved(ours, theirs, args.threads, repeats, their_threads))


def zyx(x: SparseVoxels) -> SparseVoxels:
    """(b, x, y, z) on (X, Y, Z) -> (b, z, y, x) on (Z, Y, X), spconv's / OpenPCDet's order."""
    s = x.spatial_shape
    return SparseVoxels(x.coords[:, [0, 3, 2, 1]].contiguous(), x.feats, (s[2], s[1], s[0]), x.batch_size, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="threads for sparse3d (spconv always runs at 1)")
    parser.add_argument("--background-load", type=int, default=0, metavar="N",
                        help="also time every case beside N busy processes; the JSON's figures are then those")
    parser.add_argument("--json", type=str, default=None, help="write all figures to this JSON file")
    parser.add_argument("--memory-probe", choices=MEMORY_PROBES, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        print(json.dumps({"peak_mb": memory_probe(args.memory_probe, args.threads)}))
        return

    try:
        import spconv.pytorch as spconv
    except ImportError:
        spconv = None
    if spconv is not None:
        patch_spconv_cpu_stream()

    t0 = time.perf_counter()
    x, n_points = lidar_voxels(0)
    x = zyx(x)  # both libraries run on the same (b, z, y, x) indices
    print(f"scene: {n_points} points -> {x.num_voxels} voxels, spatial shape {x.spatial_shape} "
          f"({time.perf_counter() - t0:.1f} s to build)")
    results: dict = {"num_points": n_points, "num_voxels": x.num_voxels, "threads": args.threads,
                     "background_load": args.background_load, "cases": {}}

    def figures(ours: Timing, theirs: Timing | None, flops: float | None) -> dict:
        entry = {"sparse3d_median_s": ours.median, "sparse3d_min_s": ours.min}
        if theirs is not None:
            entry |= {"spconv_median_s": theirs.median, "spconv_min_s": theirs.min, "speedup": theirs.median / ours.median}
        if flops:
            entry["sparse3d_gflops"] = flops / ours.median / 1e9
        return entry

    def row(name: str, entry: dict) -> str:
        ratio = f"{entry['speedup']:6.2f}x" if "speedup" in entry else "   n/a"
        gf = f"{entry['sparse3d_gflops']:6.1f}" if "sparse3d_gflops" in entry else "   n/a"
        sp = (f"{entry['spconv_median_s'] * 1e3:9.1f} / {entry['spconv_min_s'] * 1e3:9.1f}" if "speedup" in entry
              else "n/a".rjust(21))
        return (f"{name:34s} {entry['sparse3d_median_s'] * 1e3:9.1f} / {entry['sparse3d_min_s'] * 1e3:9.1f}   {sp}"
                f"   {ratio}   {gf}")

    def record(name, measured: Measured, flops: float | None = None):
        """The case's figures under the requested load; without it in "no_load" when a load was requested."""
        entry = figures(*measured.as_is, flops)
        if measured.loaded is not None:
            print(row(name, entry), flush=True)
            entry = figures(*measured.loaded, flops) | {"no_load": entry}
            name_loaded = f"  beside {args.background_load} busy"
            print(row(name_loaded, entry), flush=True)
        else:
            print(row(name, entry), flush=True)
        results["cases"][name] = entry

    print(f"{'case':34s} {'sparse3d ms (med / min)':>23s}   {'spconv ms 1 thr (med / min)':>21s}   ratio   GFLOP/s")
    shape = x.spatial_shape
    geom = ((3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1))
    nbr = kernel_map(x.coords, x.coords, shape, shape, *geom)
    pairs = int((nbr >= 0).sum())
    results["subm_pairs_per_voxel"] = pairs / x.num_voxels

    # (a) kernel map
    ours_map = lambda: kernel_map(x.coords, x.coords, shape, shape, *geom)  # noqa: E731
    theirs_map = None
    if spconv is not None:
        from spconv.core import ConvAlgo
        from spconv.pytorch import ops as spops

        theirs_map = lambda: spops.get_indice_pairs(x.coords, 1, list(shape), ConvAlgo.Native, [3] * 3, [1] * 3, [1] * 3, [1] * 3, [0] * 3, True, False)  # noqa: E731
    record("SubM k3 kernel map", measure(ours_map, theirs_map, args))

    # (b) SubM convs with cached maps
    for c in (16, 32, 64):
        torch.manual_seed(c)
        feats = torch.randn(x.num_voxels, c)
        ours_layer = SubMConv3d(c, c, 3, bias=False)
        xc = x.replace_feats(feats)
        ours_layer(xc)  # builds and caches the map
        theirs_layer, tc = None, None
        if spconv is not None:
            theirs_layer = spconv.SubMConv3d(c, c, 3, bias=False, indice_key="bench")
            theirs_layer.load_state_dict(ours_layer.state_dict())
            tc = spconv.SparseConvTensor(feats, x.coords, list(shape), 1)
            theirs_layer(tc)  # builds and caches its pairs in tc.indice_dict
        flops = 2.0 * pairs * c * c
        with torch.no_grad():
            fwd = measure(lambda: ours_layer(xc), (lambda: theirs_layer(tc)) if tc is not None else None, args)
        record(f"SubMConv3d {c}->{c} fwd", fwd, flops)
        v = torch.randn(x.num_voxels, c)
        f_ours, f_sp = feats.clone().requires_grad_(True), feats.clone().requires_grad_(True)
        ours_fb = lambda: torch.autograd.backward(ours_layer(x.replace_feats(f_ours)).feats, v)  # noqa: E731
        theirs_fb = None
        if tc is not None:
            t_grad = tc.replace_feature(f_sp)
            theirs_fb = lambda: torch.autograd.backward(theirs_layer(t_grad).features, v)  # noqa: E731
        record(f"SubMConv3d {c}->{c} fwd+bwd", measure(ours_fb, theirs_fb, args), 3 * flops)
        if c == 16 and tc is not None:
            results["spconv_2_thread_wrong_rows"] = spconv_race(theirs_layer, tc)
            print(f"  spconv SubMConv3d 16->16 at 2 threads, rows differing from its 1-thread result "
                  f"on 5 identical calls: {results['spconv_2_thread_wrong_rows']}")

    # (c) strided conv incl. its map (a fresh coordinate set each call)
    feats16 = torch.randn(x.num_voxels, 16)
    down = SparseConv3d(16, 32, 3, 2, 1, bias=False)
    ours_down = lambda: down(SparseVoxels(x.coords, feats16, shape, 1, check=False))  # noqa: E731
    theirs_down = None
    if spconv is not None:
        down_sp = spconv.SparseConv3d(16, 32, 3, 2, 1, bias=False)
        down_sp.load_state_dict(down.state_dict())
        theirs_down = lambda: down_sp(spconv.SparseConvTensor(feats16, x.coords, list(shape), 1))  # noqa: E731
    with torch.no_grad():
        down_measured = measure(ours_down, theirs_down, args)
    record("SparseConv3d 16->32 s2 fwd+map", down_measured)

    # (d) the encoder, maps included (fresh coordinate sets each call)
    encoder_results(x, spconv, args, record, results)

    for key, case in HEADLINES.items():
        results[key] = results["cases"][case].get("speedup")
        if "no_load" in results["cases"][case]:
            results[f"{key}_no_load"] = results["cases"][case]["no_load"].get("speedup")
    results["bitwise_deterministic"] = bitwise_deterministic(x)
    print(f"bitwise deterministic (encoder fwd+bwd at 1, 2, 2, 1 threads): {results['bitwise_deterministic']}")
    results |= peak_memory(args.threads, spconv is not None)
    if args.json:
        write_json_atomic(args.json, results)
    summary = {k: results.get(k) for k in (*HEADLINES, "bf16_encoder_fwd_speedup_vs_fp32", "bf16_rel_err", "peak_rss_mb_ours",
                                           "peak_rss_mb_spconv", "bitwise_deterministic")}
    print("SUMMARY " + " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))


def encoder_results(x: SparseVoxels, spconv, args, record, results) -> None:
    torch.manual_seed(0)
    ours = VoxelResBackBone8x(5, (x.spatial_shape[2], x.spatial_shape[1], x.spatial_shape[0] - 1)).train()
    theirs = spconv_voxel_res_backbone(5) if spconv is not None else None
    if theirs is not None:
        theirs.load_state_dict(ours.state_dict())
        theirs.train()
    fresh = lambda: SparseVoxels(x.coords, x.feats, x.spatial_shape, 1, check=False)  # noqa: E731
    sp_input = lambda: spconv.SparseConvTensor(x.feats, x.coords, list(x.spatial_shape), 1)  # noqa: E731
    repeats = max(3, args.repeats - 2)
    with torch.no_grad():
        fwd = measure(lambda: ours.forward_zyx(fresh()), (lambda: theirs(sp_input())) if theirs else None, args, repeats)
    record("VoxelResBackBone8x fwd", fwd)

    def ours_fb():
        out = ours.forward_zyx(fresh()).encoded
        (out.feats * out.feats).sum().backward()

    def theirs_fb():
        out = theirs(sp_input())
        (out.features * out.features).sum().backward()

    record("VoxelResBackBone8x fwd+bwd", measure(ours_fb, theirs_fb if theirs else None, args, repeats))
    if bf16_dot_products():
        bf16_results(ours, fresh, args, repeats, results)
    else:
        print("bf16: this CPU has no AVX512-BF16 (or ATEN_CPU_CAPABILITY caps it): not measured")


def bf16_results(ours: VoxelResBackBone8x, fresh: Callable[[], SparseVoxels], args, repeats: int, results: dict) -> None:
    """The encoder's forward under CPU autocast to bfloat16 against its float32 forward,
    interleaved: the ratio, and the bf16 output's relative L2 error (over all voxels, and
    the 99th percentile of the per-voxel errors among voxels with a nonzero output)."""
    def bf16_forward():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return ours.forward_zyx(fresh())

    with torch.no_grad():
        measured = measure(bf16_forward, lambda: ours.forward_zyx(fresh()), args, repeats, their_threads=args.threads)
        low, full = bf16_forward().encoded.feats, ours.forward_zyx(fresh()).encoded.feats
    timing, fp32 = measured.loaded or measured.as_is
    norms = full.norm(dim=1)
    per_voxel = (low - full).norm(dim=1)[norms > 0] / norms[norms > 0]
    results["bf16_encoder_fwd_speedup_vs_fp32"] = fp32.median / timing.median
    results["bf16_rel_err"] = float((low - full).norm() / full.norm())
    results["bf16_rel_err_voxel_p99"] = float(per_voxel.quantile(0.99))
    results["cases"]["VoxelResBackBone8x fwd bf16"] = {"sparse3d_median_s": timing.median, "sparse3d_min_s": timing.min,
                                                        "fp32_median_s": fp32.median}
    print(f"{'VoxelResBackBone8x fwd bf16':34s} {timing.median * 1e3:9.1f} / {timing.min * 1e3:9.1f}   "
          f"fp32 {fp32.median * 1e3:.1f} ms: {results['bf16_encoder_fwd_speedup_vs_fp32']:.2f}x; relative error "
          f"{results['bf16_rel_err']:.2e} (per voxel, 99th percentile {results['bf16_rel_err_voxel_p99']:.2e})", flush=True)


MEMORY_PROBES = ("ours:fwd", "ours:fwd_bwd", "spconv:fwd", "spconv:fwd_bwd")


def status_kb(field: str) -> int:
    """A size field of /proc/self/status (VmRSS, VmHWM) in KiB."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def memory_probe(probe: str, threads: int) -> float:
    """MiB by which one encoder call (``side:pass``) raises the peak resident set above the
    resident set before it (the peak is reset first: /proc/self/clear_refs)."""
    side, which = probe.split(":")
    torch.set_num_threads(threads if side == "ours" else 1)
    x = zyx(lidar_voxels(0)[0])
    torch.manual_seed(0)
    if side == "ours":
        encoder = VoxelResBackBone8x(5, (x.spatial_shape[2], x.spatial_shape[1], x.spatial_shape[0] - 1)).train()
        call = lambda: encoder.forward_zyx(SparseVoxels(x.coords, x.feats, x.spatial_shape, 1, check=False)).encoded.feats  # noqa: E731
    else:
        import spconv.pytorch as spconv

        patch_spconv_cpu_stream()
        encoder = spconv_voxel_res_backbone(5).train()
        call = lambda: encoder(spconv.SparseConvTensor(x.feats, x.coords, list(x.spatial_shape), 1)).features  # noqa: E731
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status_kb("VmRSS")
    if which == "fwd":
        with torch.no_grad():
            call()
    else:
        out = call()
        (out * out).sum().backward()
    return (status_kb("VmHWM") - before) / 1024


def peak_memory(threads: int, with_spconv: bool) -> dict:
    """Peak resident-memory growth (MiB) of the encoder's first forward and forward +
    backward, each in a fresh process (freed memory a previous call left to the allocator
    would hide the next one's)."""
    report = {}
    for probe in MEMORY_PROBES:
        side, which = probe.split(":")
        if side == "spconv" and not with_spconv:
            continue
        run = subprocess.run([sys.executable, __file__, "--memory-probe", probe, "--threads", str(threads)],
                             check=True, capture_output=True, text=True)
        mb = json.loads(run.stdout.strip().splitlines()[-1])["peak_mb"]
        report[f"peak_rss_mb_{side}" + ("_fwd" if which == "fwd" else "")] = mb
    print("peak resident memory growth, encoder (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in report.items()))
    return report


def spconv_race(layer, tensor, calls: int = 5) -> list[int]:
    """Rows of spconv's 2-thread SubM output that differ from its 1-thread output, per call."""
    torch.set_num_threads(1)
    with torch.no_grad():
        reference = layer(tensor).features
        counts = []
        torch.set_num_threads(2)
        for _ in range(calls):
            counts.append(int((layer(tensor).features != reference).any(1).sum()))
    return counts


def bitwise_deterministic(x: SparseVoxels, threads=(1, 2, 2, 1)) -> bool:
    """Whole-encoder forward + backward (outputs and every gradient) bit for bit equal at
    each thread count in ``threads`` and across the repeated runs."""
    torch.manual_seed(0)
    encoder = VoxelResBackBone8x(5, (x.spatial_shape[2], x.spatial_shape[1], x.spatial_shape[0] - 1)).train()
    snapshot = {k: v.clone() for k, v in encoder.state_dict().items()}
    runs = []
    for t in threads:
        torch.set_num_threads(t)
        encoder.load_state_dict(snapshot)  # BN running stats move in train mode
        encoder.zero_grad()
        feats = x.feats.clone().requires_grad_(True)
        out = encoder.forward_zyx(SparseVoxels(x.coords, feats, x.spatial_shape, 1, check=False)).encoded
        (out.feats * out.feats).sum().backward()
        runs.append([out.coords, out.feats.detach(), feats.grad] + [p.grad for p in encoder.parameters()])
    return all(torch.equal(a, b) for run in runs[1:] for a, b in zip(runs[0], run))


def write_json_atomic(path: str, data: dict) -> None:
    """Writes ``data`` as JSON through a temp file in the same directory + os.replace."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
