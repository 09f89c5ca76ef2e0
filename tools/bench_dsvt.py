"""Benchmark: the DSVT-P backbone (nuScenes pillar grid) against a naive per-window padded
attention implementation with the same outputs, side by side in one process.

Scene: 10 simulated sweeps of the street LiDAR scene (sparse3d.synthetic.lidar.simulate_sweeps,
as tools/bench_sparse_conv.py; x, y, z, intensity, dt), encoded by the DSVT-P dynamic pillar VFE (0.3 m pillars, 360 x 360 grid);
the pillars are the fixed input of both backbones.

  * ours: sparse3d.nn.dsvt.DSVT -- sets of 90 slots, one scaled_dot_product_attention over
    all sets of a layer, keys masked where a slot repeats a voxel;
  * naive: the same modules and weights, but every layer attends inside whole windows
    padded to the largest window (up to 30 x 30 = 900 pillars), each voxel masked to the
    voxels of its own set -- the same outputs (checked here) at window-sized cost.

  * ours, BLAS linears: ours with every linear layer on torch's BLAS GEMM
    (``F.linear``) instead of sparse3d.nn.linear, whose results do not depend on the
    thread count -- what determinism costs.

Timed: forward, and forward + backward of a random linear loss (median and min of the
repeats, at --threads; ours and ours-with-BLAS interleaved, then the naive runs; with
--background-load N, all of it again beside N busy processes that the benchmark starts and
stops itself, whose figures the JSON then gives, with the first ones under "no_load").
Peak memory: the highest live total of the CPU allocations recorded by torch.profiler
while running the call (inputs excluded).

    python tools/bench_dsvt.py [--repeats 3] [--threads 2] [--background-load N] [--json out.json]

The last printed line is a one-line summary.
"""

import sparse3d  # noqa: F401, I001  (first: it sets torch's OpenMP spin before torch loads)
import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from background_load import background_load
from torch.profiler import ProfilerActivity, profile

from sparse3d.core.sparse_voxels import SparseVoxels
from sparse3d.nn import linear as deterministic_linear
from sparse3d.nn.dsvt import DSVT, DynamicVFE, dsvt_preset
from sparse3d.nn.dsvt import attention as dsvt_attention
from sparse3d.nn.dsvt import backbone as bb
from sparse3d.nn.dsvt.attention import SetAttention, SetLayout
from sparse3d.nn.dsvt.backbone import shift_windows
from sparse3d.synthetic.lidar import SpinningLidarConfig, simulate_sweeps, street_scene


def window_rows(coords: torch.Tensor, shape, window, shift) -> torch.Tensor:
    """int64 [N] dense window index (0..W-1) of every voxel for one window shift."""
    c = coords.long()
    shifted = c[:, 1:] + torch.tensor(shift)
    win = shifted // torch.tensor(window)
    n_win = torch.tensor([-(-s // w) + 1 for s, w in zip(shape, window)])
    key = ((c[:, 0] * n_win[0] + win[:, 0]) * n_win[1] + win[:, 1]) * n_win[2] + win[:, 2]
    return torch.unique(key, return_inverse=True)[1]


def naive_attend(attn: SetAttention, windows: dict[int, torch.Tensor], feats, pos, layout: SetLayout, row: int):
    """SetAttention.attend computed per window, padded to the largest window."""
    n, c = feats.shape
    win = windows[id(layout)]
    part = layout.partition
    set_size = part.set_inds.shape[2]
    flat = part.set_inds[row].reshape(-1)
    slots = torch.arange(flat.numel())
    own_set = part.first_slot[row] // set_size  # [N] set of each voxel's first slot
    # a voxel's slots are one contiguous run, so it lies in sets first_set..last_set
    first_set = own_set
    last_set = torch.zeros(n, dtype=torch.int64).scatter_reduce(0, flat, slots, "amax") // set_size
    order = torch.sort(win, stable=True).indices
    counts = torch.bincount(win)
    n_win, longest = counts.numel(), int(counts.max())
    pos_in_win = torch.arange(n) - (counts.cumsum(0) - counts)[win[order]]
    index = torch.full((n_win, longest), -1, dtype=torch.int64)
    index[win[order], pos_in_win] = order
    valid = index >= 0
    safe = index.clamp(min=0)
    w, b = attn.in_proj.weight, attn.in_proj.bias
    q = F.linear(feats + pos, w[:c], b[:c])[safe]
    k = F.linear(feats + pos, w[c : 2 * c], b[c : 2 * c])[safe]
    v = F.linear(feats, w[2 * c :], b[2 * c :])[safe]
    qs = own_set[safe][:, :, None]  # [W, L, 1]
    allowed = (first_set[safe][:, None, :] <= qs) & (qs <= last_set[safe][:, None, :]) & valid[:, None, :]
    allowed |= ~valid[:, :, None]  # padded queries attend to anything; their rows are dropped
    h = attn.num_heads
    split = lambda t: t.view(n_win, longest, h, c // h).transpose(1, 2)
    out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=allowed[:, None])
    out = out.transpose(1, 2).reshape(n_win * longest, c)
    per_voxel = torch.empty(n, dtype=torch.int64)
    per_voxel[index[valid]] = valid.reshape(-1).nonzero()[:, 0]
    return attn.out_proj(out[per_voxel])


class NaiveDSVT:
    """Runs a DSVT module with naive_attend in every SetAttention (same weights)."""

    def __init__(self, model: DSVT):
        self.model = model

    def __call__(self, voxels: SparseVoxels) -> SparseVoxels:
        windows: dict[int, torch.Tensor] = {}
        original = bb.stage_partitions

        def partitions_and_windows(coords, shape, stage_cfg, hybrid):
            parts = original(coords, shape, stage_cfg, hybrid)
            for part, window, shift in zip(parts, shift_windows(stage_cfg, hybrid), stage_cfg.shifts):
                windows[id(part)] = window_rows(coords, shape, window, shift)
            return parts

        # The partitions are made inside DSVT.forward; wrap their maker to also record the
        # naive window grouping of each one.
        attns = [m for m in self.model.modules() if isinstance(m, SetAttention)]
        bb.stage_partitions = partitions_and_windows
        for m in attns:
            m.attend = lambda f, p, layout, row, m=m: naive_attend(m, windows, f, p, layout, row)
        try:
            return self.model(voxels)
        finally:
            bb.stage_partitions = original
            for m in attns:
                del m.attend


class BlasLinears:
    """Runs a DSVT module with torch's F.linear in place of sparse3d.nn.linear."""

    def __init__(self, model: DSVT):
        self.model = model

    def __call__(self, voxels: SparseVoxels) -> SparseVoxels:
        layer_forward, attention_linear = deterministic_linear.Linear.forward, dsvt_attention.linear
        deterministic_linear.Linear.forward = torch.nn.Linear.forward
        dsvt_attention.linear = F.linear
        try:
            return self.model(voxels)
        finally:
            deterministic_linear.Linear.forward, dsvt_attention.linear = layer_forward, attention_linear


def peak_memory_mb(fn: Callable[[], object]) -> float:
    """Highest live total (MB) of the CPU allocations made while ``fn`` runs."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
    )
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak / 2**20


def time_calls(fns: list[Callable[[], object]], repeats: int) -> list[list[float]]:
    """Wall-clock seconds of ``repeats`` calls of each of ``fns`` (after one warm-up call
    each), the functions taking turns so that a change of machine load hits all alike."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, own in zip(fns, times):
            start = time.perf_counter()
            fn()
            own.append(time.perf_counter() - start)
    return times


def speed_figures(impls: dict[str, Callable], fwd, fwd_bwd, repeats: int) -> dict:
    """Median seconds of ours, ours with BLAS linears and the naive windows, forward and
    forward + backward, with the ratios; prints them."""
    # Every measurement of ours runs before the naive one: interleaved runs showed ours
    # several times slower right after a naive backward (~2 GB of allocations), which
    # would bias the ratio in the naive's favour.
    times: dict[str, dict[str, list[float]]] = {"ours": {}, "blas": {}, "naive": {}}
    for mode, make in (("fwd", fwd), ("fwd_bwd", fwd_bwd)):
        times["ours"][mode], times["blas"][mode] = time_calls([make(impls["ours"]), make(impls["blas"])], repeats)
    for mode, make in (("fwd", fwd), ("fwd_bwd", fwd_bwd)):
        times["naive"][mode] = time_calls([make(impls["naive"])], repeats)[0]
    results = {}
    for mode in ("fwd", "fwd_bwd"):
        ours, blas_times = times["ours"][mode], times["blas"][mode]
        results[f"{mode}_blas_linears_s"] = statistics.median(blas_times)
        results[f"{mode}_cost_of_determinism"] = statistics.median(ours) / results[f"{mode}_blas_linears_s"]
        print(f"{mode:8s} ours {statistics.median(ours) * 1e3:8.1f} ms   with BLAS linears "
              f"{results[f'{mode}_blas_linears_s'] * 1e3:8.1f} ms (min {min(blas_times) * 1e3:.1f})   "
              f"ours / BLAS {results[f'{mode}_cost_of_determinism']:.3f}")
    for mode in ("fwd", "fwd_bwd"):
        ours, slow = times["ours"][mode], times["naive"][mode]
        results[f"{mode}_ours_s"], results[f"{mode}_naive_s"] = statistics.median(ours), statistics.median(slow)
        results[f"{mode}_speedup_vs_naive"] = results[f"{mode}_naive_s"] / results[f"{mode}_ours_s"]
        print(f"{mode:8s} ours {results[f'{mode}_ours_s'] * 1e3:8.1f} ms (min {min(ours) * 1e3:.1f})   "
              f"naive {results[f'{mode}_naive_s'] * 1e3:8.1f} ms (min {min(slow) * 1e3:.1f})   "
              f"speedup {results[f'{mode}_speedup_vs_naive']:.2f}x")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--background-load", type=int, default=0, metavar="N",
                        help="time again beside N busy processes; the JSON's figures are then those")
    parser.add_argument("--json", type=str, default=None, help="write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    config = dsvt_preset("dsvt_p_nuscenes")
    points = torch.from_numpy(simulate_sweeps(street_scene(seed=0), config=SpinningLidarConfig(azimuth_steps=2170)))
    vfe = DynamicVFE(config.point_channels, config.vfe_filters, config.pc_range, config.voxel_size)
    with torch.no_grad():
        pillars = vfe(points, batch_size=1)
    pillars = pillars.replace_feats(pillars.feats.detach())
    model = DSVT(config).train()
    naive = NaiveDSVT(model)
    blas = BlasLinears(model)
    print(f"scene: {points.shape[0]} points -> {pillars.num_voxels} pillars on {config.grid_shape}, "
          f"threads {args.threads}")

    with torch.no_grad():
        ours_out, naive_out, blas_out = model(pillars).feats, naive(pillars).feats, blas(pillars).feats
    max_diff = float((ours_out - naive_out).abs().max())
    print(f"same outputs: max |ours - naive| = {max_diff:.2e}, max |ours - BLAS linears| = "
          f"{float((ours_out - blas_out).abs().max()):.2e}")
    if max_diff > 1e-3:
        raise SystemExit(f"bench_dsvt: the naive and set implementations disagree (max diff {max_diff})")
    cotangent = torch.randn_like(ours_out)

    def fwd(impl):
        def run():
            with torch.no_grad():
                impl(pillars)
        return run

    def fwd_bwd(impl):
        def run():
            model.zero_grad(set_to_none=True)
            (impl(pillars).feats * cotangent).sum().backward()
        return run

    results = speed_figures({"ours": model, "blas": blas, "naive": naive}, fwd, fwd_bwd, args.repeats)
    if args.background_load:
        print(f"beside {args.background_load} busy processes:")
        with background_load(args.background_load):
            results = speed_figures({"ours": model, "blas": blas, "naive": naive}, fwd, fwd_bwd, args.repeats) | {
                "no_load": results}
    mem_ours, mem_naive = peak_memory_mb(fwd_bwd(model)), peak_memory_mb(fwd_bwd(naive))
    results.update(peak_mem_ours_mb=mem_ours, peak_mem_naive_mb=mem_naive, peak_mem_ratio=mem_naive / mem_ours)
    print(f"peak memory (fwd+bwd): ours {mem_ours:.0f} MB, naive {mem_naive:.0f} MB, ratio {mem_naive / mem_ours:.2f}x")
    results.update(num_points=points.shape[0], num_pillars=pillars.num_voxels, threads=args.threads,
                   background_load=args.background_load, max_abs_diff=max_diff)

    if args.json:
        directory = os.path.dirname(os.path.abspath(args.json))
        with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, suffix=".tmp") as f:
            json.dump(results, f, indent=2)
        os.replace(f.name, args.json)
    print(f"DSVT-P {pillars.num_voxels} pillars: fwd {results['fwd_speedup_vs_naive']:.2f}x, "
          f"fwd+bwd {results['fwd_bwd_speedup_vs_naive']:.2f}x faster than naive windows, "
          f"peak memory {results['peak_mem_ratio']:.2f}x lower; deterministic linears / BLAS: "
          f"fwd {results['fwd_cost_of_determinism']:.3f}, fwd+bwd {results['fwd_bwd_cost_of_determinism']:.3f}")


if __name__ == "__main__":
    main()
