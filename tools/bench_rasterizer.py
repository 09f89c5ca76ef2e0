"""Benchmark: the native CPU Gaussian rasterizer against the pure-torch reference.

Both backends render the same random scenes in the same process (forward, then forward +
backward of a random linear loss over the colours and alphas); the script prints times,
speed-ups and the worst absolute difference over outputs and gradients. With
--background-load N every case runs twice: on the machine as it is, then beside N busy
processes that the benchmark starts and stops itself (the JSON's figures are then those,
with the first run's under "no_load").

    python tools/bench_rasterizer.py [--sizes 128 256 512] [--counts 10000 100000]
                                     [--repeats 3] [--threads N] [--background-load N] [--json PATH]

The last printed line is a one-line summary.
"""

import sparse3d  # noqa: F401, I001  (first: it sets torch's OpenMP spin before torch loads)
import argparse
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass

import torch
from background_load import background_load

from sparse3d.render.rasterize import RasterConfig, rasterize_gaussians

PARAMS = ("means", "quats", "scales", "opacities", "colors")


@dataclass(frozen=True)
class BenchArgs:
    """Command-line options."""

    sizes: tuple[int, ...]
    """Square image sizes in pixels."""
    counts: tuple[int, ...]
    """Numbers of Gaussians."""
    repeats: int
    """Timed runs per native case after a warm-up (the fastest is reported); the reference
    runs twice."""
    json_path: str | None
    """Where to write every figure as JSON, or None."""
    threads: int | None
    """Torch / native thread count for both sides, or None for torch's default."""
    background_load: int
    """Busy processes beside the second run of every case (0: one run, none beside it)."""


def make_scene(n: int, size: int, seed: int = 0) -> dict:
    """n Gaussians filling a unit ball 3 units in front of one 50-degree camera.

    Scales shrink with n^(-1/3) so that the scene keeps about the same depth complexity
    (as a real reconstruction does when densified), and are log-uniform over a factor 8.
    """
    g = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    means = direction * torch.rand(n, 1, generator=g).pow(1 / 3)
    base = 0.35 * n ** (-1 / 3)
    scales = base * torch.exp(torch.rand(n, 3, generator=g) * math.log(8.0) - math.log(4.0))
    viewmats = torch.eye(4)[None].clone()
    viewmats[0, 2, 3] = 3.0
    focal = 0.5 * size / math.tan(math.radians(25.0))
    Ks = torch.tensor([[[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]]])
    return {
        "means": means,
        "quats": torch.randn(n, 4, generator=g),
        "scales": scales,
        "opacities": torch.sigmoid(torch.randn(n, generator=g)),
        "colors": torch.rand(n, 3, generator=g),
        "viewmats": viewmats,
        "Ks": Ks,
    }


def run(scene: dict, size: int, backend: str, backward: bool):
    """One render (and backward of a fixed random linear loss, whose cotangents are drawn
    outside the timed region): returns (seconds, outputs and gradients)."""
    params = [scene[k].clone().requires_grad_(backward) for k in PARAMS]
    config = RasterConfig(backend=backend)
    n_cams = scene["viewmats"].shape[0]
    g = torch.Generator().manual_seed(1)
    v_img = torch.randn(n_cams, size, size, 3, generator=g)
    v_alpha = torch.randn(n_cams, size, size, 1, generator=g)
    start = time.perf_counter()
    img, alpha, _ = rasterize_gaussians(*params, scene["viewmats"], scene["Ks"], size, size, config)
    results = [img.detach(), alpha.detach()]
    if backward:
        loss = (img * v_img).sum() + (alpha * v_alpha).sum()
        results += list(torch.autograd.grad(loss, params))
    return time.perf_counter() - start, results


def timed(scene: dict, size: int, backend: str, backward: bool, repeats: int):
    """Fastest of `repeats` runs (the least disturbed by other processes), and the results."""
    seconds, results = run(scene, size, backend, backward)
    for _ in range(repeats - 1):
        seconds = min(seconds, run(scene, size, backend, backward)[0])
    return seconds, results


def bench_case(n: int, size: int, repeats: int) -> dict:
    """Times both backends on one scene; returns its figures."""
    scene = make_scene(n, size)
    fig = {}
    for backward, label in ((False, "fwd"), (True, "fwd_bwd")):
        t_native, out_native = timed(scene, size, "native", backward, repeats + 1)
        t_ref, out_ref = timed(scene, size, "torch", backward, 2)
        err = max((a - b).abs().max().item() for a, b in zip(out_native, out_ref))
        scale = max(b.abs().max().item() for b in out_ref)
        fig[f"{label}_native_s"] = t_native
        fig[f"{label}_ref_s"] = t_ref
        fig[f"{label}_speedup"] = t_ref / t_native
        fig[f"{label}_max_abs_err"] = err
        fig[f"{label}_max_rel_err"] = err / max(scale, 1e-30)
    return fig


def parse_args() -> BenchArgs:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", dest="json_path", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--background-load", type=int, default=0, metavar="N")
    a = parser.parse_args()
    return BenchArgs(tuple(a.sizes), tuple(a.counts), a.repeats, a.json_path, a.threads, a.background_load)


def write_json_atomic(path: str, payload: dict) -> None:
    """Writes JSON through a temporary file and os.replace, so readers never see half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as f:
        json.dump(payload, f, indent=2)
    os.replace(f.name, path)


def case_row(label: str, fig: dict) -> str:
    """One printed line of a case's figures."""
    return (f"{label} | {fig['fwd_native_s'] * 1e3:>7.1f}ms {fig['fwd_ref_s'] * 1e3:>7.0f}ms {fig['fwd_speedup']:>5.1f}x"
            f" | {fig['fwd_bwd_native_s'] * 1e3:>7.1f}ms {fig['fwd_bwd_ref_s'] * 1e3:>7.0f}ms {fig['fwd_bwd_speedup']:>5.1f}x"
            f" | {max(fig['fwd_max_abs_err'], fig['fwd_bwd_max_abs_err']):.2e}")


def main(args: BenchArgs) -> dict:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # Other processes on the machine slow multi-threaded torch ops (the reference) far more
    # than the native kernels; the load average is recorded so figures can be judged.
    figures = {"threads": torch.get_num_threads(), "background_load": args.background_load,
               "load_avg_1min": os.getloadavg()[0], "cases": {}}
    print(f"threads: {figures['threads']}, load average: {figures['load_avg_1min']:.2f}")
    print(f"{'N':>7} {'size':>5} | {'fwd ours':>9} {'fwd ref':>9} {'x':>6} | {'f+b ours':>9} {'f+b ref':>9} {'x':>6} | max abs err")
    for n in args.counts:
        for size in args.sizes:
            fig = bench_case(n, size, args.repeats)
            print(case_row(f"{n:>7} {size:>5}", fig), flush=True)
            if args.background_load:
                with background_load(args.background_load):
                    fig = bench_case(n, size, args.repeats) | {"no_load": fig}
                print(case_row(f"  beside {args.background_load} busy".ljust(13), fig), flush=True)
            key = f"{n // 1000}k_{size}"
            figures["cases"][key] = fig
            for label in ("fwd_speedup", "fwd_bwd_speedup"):
                figures[f"{label}_{key}"] = fig[label]
                if "no_load" in fig:
                    figures[f"{label}_{key}_no_load"] = fig["no_load"][label]
    figures["max_abs_err"] = max(max(f["fwd_max_abs_err"], f["fwd_bwd_max_abs_err"]) for f in figures["cases"].values())
    figures["max_rel_err"] = max(max(f["fwd_max_rel_err"], f["fwd_bwd_max_rel_err"]) for f in figures["cases"].values())
    figures["load_avg_1min_end"] = os.getloadavg()[0]
    if args.json_path:
        write_json_atomic(args.json_path, figures)
    headline = "fwd_bwd_speedup_100k_256"
    summary = f"{headline}={figures[headline]:.1f}x " if headline in figures else ""
    if f"{headline}_no_load" in figures:
        summary += f"(no load {figures[f'{headline}_no_load']:.1f}x, beside {args.background_load} busy) "
    print(f"summary: {summary}max_abs_err={figures['max_abs_err']:.2e} max_rel_err={figures['max_rel_err']:.2e} "
          f"cases={len(figures['cases'])}")
    return figures


if __name__ == "__main__":
    main(parse_args())
