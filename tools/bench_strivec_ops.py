"""Benchmark: Strivec's four native ops against their pure-torch references, side by side
in one process, on the inputs of one training step of method ``strivec``.

    march_rays          (sparse3d.core.ray_march)    vs march_rays_ref           forward
    box_lookup          (sparse3d.core.box_lookup)   vs box_lookup_ref           forward
    trivector_features  (sparse3d.fields.trivector)  vs trivector_features_ref   forward, forward + backward (vectors)
    volume_weights      (sparse3d.render.volume)     vs volume_weights_ref       forward, forward + backward (sigmas)

Inputs, built from --seed as sparse3d.methods.strivec and radiance_field.render_rays
build them (RayRenderConfig and StrivecFieldConfig defaults): a torus of outer radius 0.8
(the coarse geometry: points on its surface) places the local tensors of each level
(voxels 0.4 / 0.2 / 0.1, half sizes 0.3 / 0.15 / 0.075, K = 4, density components
32 / 24 / 16, appearance 48, vectors of 29 / 15 / 7 values: the start of training) in the
scene box [-1.5, 1.5]^3; rays are sampled in the cells of the 0.05 occupancy grid that
meet a tensor's box, every 0.5 x 2 x 0.3 / 28; the 4,096 rays of a batch leave random
pixels of 100 cameras (40 degrees, 800 x 800) at distance 4 looking at the origin, with
a random jitter. The samples come from march_rays, their lookups from box_lookup (each
level); density is evaluated at every sample of every level and appearance at the 25 %
of the samples nearest the surface (a stand-in for the samples whose rendering weight
passes the shading threshold); volume_weights runs on random densities of that sample
count (min_transmittance 1e-4), so that part of the rays stop early.

Before timing, every op's result (and gradient) is checked against its reference once
on these inputs, so both sides always do the same work. Timed: median of --repeats runs
of the native op and --ref-repeats of the reference, interleaved (after one warm-up
each); "fwd" runs under no_grad, "fwd+bwd" is the forward and the backward of a fixed
random cotangent. Ratios are reference time / native time (> 1: native is faster). The
overall figure, ``ops_speedup_vs_ref``, is the sum of reference times over the sum of
native times for one training step's calls: march once, box_lookup per level, density
per level forward + backward, appearance per level forward + backward on the shaded
subset, volume_weights forward + backward.

    python tools/bench_strivec_ops.py [--rays 4096] [--repeats 5] [--ref-repeats 3] [--ref-chunk 65536]
                                      [--threads N] [--seed 0] [--json PATH] [--small]

The last printed line is a one-line summary.
"""

import sparse3d  # noqa: I001  (first: it sets torch's OpenMP spin before torch loads)
import argparse
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from sparse3d.core.box_lookup import box_lookup, box_lookup_ref
from sparse3d.core.grid import VoxelGrid
from sparse3d.core.ray_march import RaySamples, march_rays, march_rays_ref, ray_box
from sparse3d.fields.occupancy import box_occupancy
from sparse3d.fields.strivec import StrivecField, StrivecFieldConfig
from sparse3d.fields.trivector import trivector_features, trivector_features_ref
from sparse3d.geometry.cameras import Cameras, intrinsics_from_fov, look_at_viewmats
from sparse3d.geometry.rays import pixel_rays
from sparse3d.io.atomic import write_json_atomic
from sparse3d.methods.radiance_field import RayRenderConfig
from sparse3d.render.volume import volume_weights, volume_weights_ref

# The scene: a torus of outer radius 0.8 (the synthetic torus's proportions), tilted 35
# degrees about x; cameras at distance 4 on the band of elevations -10..80 degrees.
TORUS_MAJOR, TORUS_MINOR, TORUS_TILT_DEG = 0.58, 0.22, 35.0
SURFACE_POINTS = 50_000
CAMERAS, CAMERA_DISTANCE, FOV_DEG, RESOLUTION = 100, 4.0, 40.0, 800
SHADED_FRACTION = 0.25
SIGMA_MEAN = 10.0  # random densities: exponential with this mean (world units^-1)
SMALL_RAYS = 256
GOLDEN_ANGLE_DEG = 180.0 * (3.0 - math.sqrt(5.0))


@dataclass(frozen=True)
class Level:
    """One level of local tensors (detached from the field: plain tensors)."""

    grid: VoxelGrid
    occupied: Tensor
    centers: Tensor
    half_size: float
    density: Tensor
    appearance: Tensor


@dataclass(frozen=True)
class Scene:
    """One training step's inputs."""

    origins: Tensor
    dirs: Tensor
    jitter: Tensor
    t_start: Tensor
    t_end: Tensor
    step: float
    occupancy_grid: VoxelGrid
    occupancy_keys: Tensor
    levels: list[Level]
    k: int
    min_transmittance: float


def tilt() -> Tensor:
    """float32 [3, 3] the torus's rotation about x."""
    c, s = math.cos(math.radians(TORUS_TILT_DEG)), math.sin(math.radians(TORUS_TILT_DEG))
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def torus_points(n: int, g: torch.Generator) -> Tensor:
    """float32 [n, 3] random points on the torus's surface (uniform in its two angles)."""
    theta, phi = (torch.rand(2, n, generator=g) * 2 * math.pi).unbind(0)
    ring = TORUS_MAJOR + TORUS_MINOR * phi.cos()
    local = torch.stack([ring * theta.cos(), ring * theta.sin(), TORUS_MINOR * phi.sin()], -1)
    return local @ tilt().T


def surface_distance(points: Tensor) -> Tensor:
    """float32 [S] unsigned distance of ``points`` [S, 3] to the torus's surface."""
    local = points @ tilt()  # the inverse rotation
    radial = local[:, :2].norm(dim=1) - TORUS_MAJOR
    return (torch.stack([radial, local[:, 2]], -1).norm(dim=1) - TORUS_MINOR).abs()


def cameras() -> Cameras:
    """CAMERAS cameras at CAMERA_DISTANCE looking at the origin, +z up (equal areas of the
    elevation band, azimuth by the golden angle, as the synthetic objects' dense views)."""
    low, high = math.sin(math.radians(-10.0)), math.sin(math.radians(80.0))
    k = torch.arange(CAMERAS, dtype=torch.float64)
    el = torch.asin(low + (high - low) * (k + 0.5) / CAMERAS)
    az = torch.deg2rad((k * GOLDEN_ANGLE_DEG) % 360.0)
    eyes = torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], -1) * CAMERA_DISTANCE
    K = intrinsics_from_fov(FOV_DEG, RESOLUTION, RESOLUTION)
    return Cameras(look_at_viewmats(eyes, torch.zeros_like(eyes)), K.expand(CAMERAS, 3, 3).clone(), RESOLUTION, RESOLUTION)


def make_scene(rays: int, seed: int) -> Scene:
    """The field, occupancy and ray batch of one training step (see the module docstring)."""
    render, tensors = RayRenderConfig(), StrivecFieldConfig()
    g = torch.Generator().manual_seed(seed)
    box = torch.tensor(render.scene_box, dtype=torch.float32)
    lower, upper = box[:3], box[3:]
    # The field places its tensors exactly as method strivec does; its vectors are the
    # initial ones (init_std 0.1).
    field = StrivecField(tensors, lower, upper, torus_points(SURFACE_POINTS, g), g)
    levels = [
        Level(lv.grid, lv.occupied, lv.centers, lv.half_size, lv.density.detach().clone(), lv.appearance.detach().clone())
        for lv in field.levels
    ]
    # Strivec.box_occupancy: the occupancy cells that meet a tensor's box, any level.
    grid = VoxelGrid.covering(lower, upper, render.occupancy_voxel)
    keys = torch.cat([box_occupancy(grid, lv.centers, lv.half_size).keys for lv in levels]).unique()
    # Strivec.sample_step: step_ratio of the spacing of level 0's vector values.
    step = render.step_ratio * 2 * levels[0].half_size / (levels[0].density.shape[-1] - 1)
    cams = cameras()
    views = torch.randint(CAMERAS, (rays,), generator=g)
    pixels = torch.randint(RESOLUTION, (rays, 2), generator=g)
    origins, dirs = pixel_rays(cams, views, pixels)
    jitter = torch.rand(rays, generator=g)
    t_start, t_end = ray_box(origins, dirs, lower, upper, render.near)
    return Scene(origins, dirs, jitter, t_start, t_end, step, grid, keys, levels, tensors.k, render.min_transmittance)


# --- timing ---------------------------------------------------------------------------


def measure(native: Callable[[], object], ref: Callable[[], object], repeats: int, ref_repeats: int) -> tuple[float, float]:
    """Median milliseconds of ``native`` over ``repeats`` runs and of ``ref`` over
    ``ref_repeats``, interleaved (so that a change of machine load hits both alike), after
    one warm-up each."""
    native()
    ref()
    times: dict[str, list[float]] = {"native": [], "ref": []}
    for i in range(max(repeats, ref_repeats)):
        for name, fn, n in (("native", native, repeats), ("ref", ref, ref_repeats)):
            if i < n:
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return 1e3 * statistics.median(times["native"]), 1e3 * statistics.median(times["ref"])


def chunked_trivector_ref(points, index, weights, vectors, centers, half_size, chunk: int, cotangent: Tensor | None = None):
    """trivector_features_ref over ``chunk`` samples at a time (its memory is
    ~2 x S x K x 3 x R floats before autograd's saved tensors: several GB for a training
    batch at once; chunking changes its cost per sample little). With ``cotangent``, each
    chunk's output is also back-propagated (the gradients accumulate in ``vectors.grad``);
    returns the concatenated output."""
    outs = []
    for start in range(0, len(points), chunk):
        part = slice(start, start + chunk)
        out = trivector_features_ref(points[part], index[part], weights[part], vectors, centers, half_size)
        if cotangent is not None:
            out.backward(cotangent[part])
            out = out.detach()
        outs.append(out)
    return torch.cat(outs) if outs else vectors.new_zeros(0, vectors.shape[2])


@dataclass
class OpCase:
    """One call of the step: how to run it both ways, forward and (optionally) forward +
    backward, and how often it counts in the step."""

    name: str
    fwd_native: Callable[[], object]
    fwd_ref: Callable[[], object]
    train_native: Callable[[], object] | None = None
    train_ref: Callable[[], object] | None = None
    size: str = ""


def trivector_case(name: str, points: Tensor, index: Tensor, weights: Tensor, vectors: Tensor, centers: Tensor,
                   half_size: float, chunk: int, g: torch.Generator) -> OpCase:
    """Forward and forward + backward (w.r.t. the vectors) of one trivector_features call,
    checked against the reference."""
    cotangent = torch.randn(len(points), vectors.shape[2], generator=g)

    def fresh() -> Tensor:
        return vectors.detach().requires_grad_(True)

    def fwd_native():
        with torch.no_grad():
            return trivector_features(points, index, weights, vectors, centers, half_size)

    def fwd_ref():
        with torch.no_grad():
            return chunked_trivector_ref(points, index, weights, vectors, centers, half_size, chunk)

    def train_native():
        v = fresh()
        out = trivector_features(points, index, weights, v, centers, half_size)
        out.backward(cotangent)
        return out.detach(), v.grad

    def train_ref():
        v = fresh()
        out = chunked_trivector_ref(points, index, weights, v, centers, half_size, chunk, cotangent)
        return out, v.grad

    out, grad = train_native()
    out_ref, grad_ref = train_ref()
    torch.testing.assert_close(out, out_ref, msg=lambda m: f"{name}: forward differs from the reference\n{m}")
    # Each tensor's gradient sums many samples, in another order in each: a tolerance
    # relative to the gradient's scale.
    scale = grad_ref.abs().max().item()
    torch.testing.assert_close(grad, grad_ref, rtol=1e-4, atol=1e-5 * scale,
                               msg=lambda m: f"{name}: gradient differs from the reference\n{m}")
    shape = f"S={len(points)} N={vectors.shape[0]} R={vectors.shape[2]} D={vectors.shape[3]}"
    return OpCase(name, fwd_native, fwd_ref, train_native, train_ref, shape)


def build_cases(scene: Scene, chunk: int, seed: int) -> tuple[list[OpCase], dict]:
    """The step's calls, each checked against its reference; and the step's sizes."""
    g = torch.Generator().manual_seed(seed + 1)
    s = scene
    cases = []

    # Ray marching.
    march_args = (s.origins, s.dirs, s.t_start, s.t_end, s.step, s.occupancy_grid, s.occupancy_keys, s.jitter)
    samples: RaySamples = march_rays(*march_args)
    expected = march_rays_ref(*march_args)
    if not (torch.equal(samples.offsets, expected.offsets) and torch.equal(samples.t, expected.t)):
        raise AssertionError("march_rays differs from march_rays_ref")
    points = samples.points(s.origins, s.dirs)
    cases.append(OpCase("march_rays", lambda: march_rays(*march_args), lambda: march_rays_ref(*march_args),
                        size=f"R={len(s.origins)} cells={len(s.occupancy_keys)} -> S={len(points)}"))

    # Box lookups, one per level.
    lookups = []
    for i, lv in enumerate(s.levels):
        args = (points, lv.grid, lv.occupied, lv.half_size, s.k)
        index, weights = box_lookup(*args)
        index_ref, weights_ref = box_lookup_ref(*args)
        # Indices may differ only where two distances lie within an ulp (box_lookup_ref's
        # docstring): allow a handful of such samples, compare weights everywhere else.
        same = (index == index_ref).all(1)
        if (~same).sum() > max(1, len(points) // 100_000):
            raise AssertionError(f"box_lookup level {i}: {(~same).sum()} of {len(points)} samples pick other boxes")
        torch.testing.assert_close(weights[same], weights_ref[same])
        lookups.append((index, weights))
        cases.append(OpCase(f"box_lookup l{i}", lambda a=args: box_lookup(*a), lambda a=args: box_lookup_ref(*a),
                            size=f"S={len(points)} N={len(lv.occupied)} K={s.k}"))

    # Density on every sample; appearance on the samples nearest the surface.
    for i, (lv, (index, weights)) in enumerate(zip(s.levels, lookups)):
        cases.append(trivector_case(f"trivector density l{i}", points, index, weights, lv.density, lv.centers,
                                    lv.half_size, chunk, g))
    n_shaded = int(SHADED_FRACTION * len(points))
    shade = torch.zeros(len(points), dtype=torch.bool)
    shade[surface_distance(points).argsort()[:n_shaded]] = True
    for i, (lv, (index, weights)) in enumerate(zip(s.levels, lookups)):
        cases.append(trivector_case(f"trivector app l{i}", points[shade], index[shade], weights[shade], lv.appearance,
                                    lv.centers, lv.half_size, chunk, g))

    # Volume weights on random densities.
    sigmas = -torch.log1p(-torch.rand(len(points), generator=g)) * SIGMA_MEAN
    deltas = torch.full_like(sigmas, s.step)
    offsets, mt = samples.offsets, s.min_transmittance
    v_weights, v_trans = torch.randn(len(sigmas), generator=g), torch.randn(len(s.origins), generator=g)

    def vol_fwd(op):
        with torch.no_grad():
            return op(sigmas, deltas, offsets, mt)

    def vol_train(op):
        x = sigmas.clone().requires_grad_(True)
        w, t = op(x, deltas, offsets, mt)
        torch.autograd.backward([w, t], [v_weights, v_trans])
        return w.detach(), t.detach(), x.grad

    for a, b, what in zip(vol_train(volume_weights), vol_train(volume_weights_ref), ("weights", "transmittance", "gradient")):
        torch.testing.assert_close(a, b, msg=lambda m, w=what: f"volume_weights: {w} differs from the reference\n{m}")
    w, _ = vol_fwd(volume_weights)
    stopped = int((w == 0).sum())  # weight 0: past their ray's early stop (sigma 0 has odds 2^-24)
    cases.append(OpCase("volume_weights", lambda: vol_fwd(volume_weights), lambda: vol_fwd(volume_weights_ref),
                        lambda: vol_train(volume_weights), lambda: vol_train(volume_weights_ref),
                        size=f"S={len(points)} R={len(s.origins)}"))

    counts = samples.offsets.diff()
    sizes = {
        "rays": len(s.origins),
        "samples": len(points),
        "shaded_samples": n_shaded,
        "samples_per_ray_mean": float(counts.float().mean()),
        "samples_per_ray_max": int(counts.max()),
        "rays_without_samples": int((counts == 0).sum()),
        "samples_after_early_stop": stopped,
        "occupancy_cells": len(s.occupancy_keys),
        "tensors_per_level": [len(lv.occupied) for lv in s.levels],
        "samples_in_a_box_per_level": [int((index[:, 0] >= 0).sum()) for index, _ in lookups],
        "step": s.step,
    }
    return cases, sizes


def op_groups(ops: dict[str, dict]) -> dict[str, dict]:
    """The calls of one op family summed over the levels ("box_lookup l0" .. "l2" ->
    "box_lookup"): milliseconds and speed-ups, as for one call."""
    groups: dict[str, dict] = {}
    for name, row in ops.items():
        group = groups.setdefault(name.rsplit(" l", 1)[0], {})
        for key, value in row.items():
            if key.endswith("_ms"):
                group[key] = group.get(key, 0.0) + value
    for group in groups.values():
        for label in ("fwd", "fwd_bwd"):
            if f"{label}_native_ms" in group:
                group[f"{label}_speedup"] = group[f"{label}_ref_ms"] / group[f"{label}_native_ms"]
    return groups


# --- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rays", type=int, default=RayRenderConfig().batch_rays, help="rays per batch (default: a training batch)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each native op (median)")
    parser.add_argument("--ref-repeats", type=int, default=3, help="timed runs of each reference (median)")
    parser.add_argument("--ref-chunk", type=int, default=65536, help="samples per call of the trivector reference")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--small", action="store_true", help=f"{SMALL_RAYS} rays (a quick check, e.g. in tests)")
    args = parser.parse_args(argv)
    if args.small:
        args.rays = SMALL_RAYS
    if min(args.rays, args.repeats, args.ref_repeats, args.ref_chunk) < 1:
        parser.error("--rays, --repeats, --ref-repeats and --ref-chunk must be >= 1")
    return args


def main(args: argparse.Namespace) -> dict:
    if not sparse3d.HAS_NATIVE:
        raise SystemExit("bench_strivec_ops: the native extension is not built (the ops would run their references)")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    figures = {"threads": torch.get_num_threads(), "repeats": args.repeats, "ref_repeats": args.ref_repeats,
               "ref_chunk": args.ref_chunk, "seed": args.seed, "small": args.small, "load_avg_1min": os.getloadavg()[0]}
    print(f"threads: {figures['threads']}, load average: {figures['load_avg_1min']:.2f}", flush=True)

    start = time.perf_counter()
    scene = make_scene(args.rays, args.seed)
    cases, sizes = build_cases(scene, args.ref_chunk, args.seed)
    figures.update(sizes)
    print(f"{sizes['rays']} rays, {sizes['samples']} samples ({sizes['samples_per_ray_mean']:.1f} per ray, "
          f"{sizes['shaded_samples']} shaded), tensors per level {sizes['tensors_per_level']}, "
          f"{sizes['occupancy_cells']} occupancy cells; all ops match their references "
          f"(setup and checks {time.perf_counter() - start:.1f} s)", flush=True)

    print(f"{'op':<22} {'size':<30} | {'fwd ours':>9} {'fwd ref':>9} {'x':>6} | {'f+b ours':>9} {'f+b ref':>9} {'x':>6}")
    ops = {}
    for case in cases:
        row = {"size": case.size}
        row["fwd_native_ms"], row["fwd_ref_ms"] = measure(case.fwd_native, case.fwd_ref, args.repeats, args.ref_repeats)
        row["fwd_speedup"] = row["fwd_ref_ms"] / row["fwd_native_ms"]
        line = f"{case.name:<22} {case.size:<30} | {row['fwd_native_ms']:7.1f}ms {row['fwd_ref_ms']:7.1f}ms {row['fwd_speedup']:5.1f}x"
        if case.train_native is not None:
            row["fwd_bwd_native_ms"], row["fwd_bwd_ref_ms"] = measure(case.train_native, case.train_ref, args.repeats, args.ref_repeats)
            row["fwd_bwd_speedup"] = row["fwd_bwd_ref_ms"] / row["fwd_bwd_native_ms"]
            line += f" | {row['fwd_bwd_native_ms']:7.1f}ms {row['fwd_bwd_ref_ms']:7.1f}ms {row['fwd_bwd_speedup']:5.1f}x"
        ops[case.name] = row
        print(line, flush=True)
    figures["ops"] = ops

    # One step: every call once; the forward-only ops count their forward in both sums.
    for label, prefix in (("fwd", "fwd"), ("fwd_bwd", "fwd_bwd")):
        native = sum(r.get(f"{prefix}_native_ms", r["fwd_native_ms"]) for r in ops.values())
        ref = sum(r.get(f"{prefix}_ref_ms", r["fwd_ref_ms"]) for r in ops.values())
        figures[f"step_{label}_native_ms"], figures[f"step_{label}_ref_ms"] = native, ref
        figures[f"step_{label}_speedup"] = ref / native
    figures["ops_speedup_vs_ref"] = figures["step_fwd_bwd_speedup"]
    figures["op_groups"] = op_groups(ops)
    figures["load_avg_1min_end"] = os.getloadavg()[0]
    print(f"{'one step':<22} {'':<30} | {figures['step_fwd_native_ms']:7.1f}ms {figures['step_fwd_ref_ms']:7.1f}ms "
          f"{figures['step_fwd_speedup']:5.1f}x | {figures['step_fwd_bwd_native_ms']:7.1f}ms "
          f"{figures['step_fwd_bwd_ref_ms']:7.1f}ms {figures['step_fwd_bwd_speedup']:5.1f}x")
    if args.json:
        write_json_atomic(Path(args.json), figures)
    per_op = ", ".join(f"{name} {r.get('fwd_bwd_speedup', r['fwd_speedup']):.1f}x" for name, r in figures["op_groups"].items())
    print(f"summary: strivec ops vs torch reference at {figures['threads']} threads, {sizes['rays']} rays / "
          f"{sizes['samples']} samples: one step fwd+bwd {figures['ops_speedup_vs_ref']:.2f}x faster "
          f"({figures['step_fwd_bwd_native_ms']:.0f} vs {figures['step_fwd_bwd_ref_ms']:.0f} ms), fwd "
          f"{figures['step_fwd_speedup']:.2f}x; {per_op} (median of {args.repeats} / {args.ref_repeats}, "
          f"load {figures['load_avg_1min']:.1f})")
    return figures


if __name__ == "__main__":
    main(parse_args())
