"""Benchmark: a LiDAR detector trained on a generated world, scored on other worlds by our
evaluation and by the nuScenes devkit, and its inference timed stage by stage beside the
same network with spconv's CPU layers for the 3D part.

1. Generates a training world (``--train-seed``) and validation worlds (``--val-seeds``),
   synthetic nuScenes-format databases (``sparse3d-data nuscenes-synth``).
2. Trains ``--method`` (centerpoint or dsvt) with its ``cpu`` preset (for ``--steps`` steps if given)
   (``sparse3d-train``, a subprocess: what a user runs); ``--output DIR`` keeps the run.
3. Predicts every sample of each validation world and scores the submission with
   ``evaluate_nuscenes`` and with the devkit (nuscenes-devkit 1.2.0) on the same file; the
   NDS of both must agree to 1e-9.
4. Times inference per frame on validation frames, per stage (voxelize, 3D backbone, BEV,
   head, decode + NMS), medians over ``--repeats`` interleaved runs: ours at ``--threads``,
   and the same network whose 3D backbone is built from spconv's layers (the same weights,
   at 1 thread: spconv's CPU build races at 2; and in training mode: its CPU build refuses
   biased convs in eval mode, so its batch norms use batch statistics — the timing, not the
   output, is what is compared). Centerpoint only: DSVT has no spconv counterpart.

The last printed line is a one-line summary. Quote figures measured on a quiet machine
(``../shared/tools/quiet -- python tools/bench_detection.py``).

``--full-size`` instead times the full nuScenes CenterPoint (OpenPCDet's network, random
weights) on 10-sweep synthetic frames, ours and spconv-built.

Usage:
    python tools/bench_detection.py [--method centerpoint] [--steps N] [--train-seed 0]
        [--val-seeds 1 2] [--scenes 16] [--samples 10] [--output DIR] [--json PATH]
    python tools/bench_detection.py --full-size [--frames 3]
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
from pathlib import Path

import torch

from sparse3d.core.precision import bf16_dot_products
from sparse3d.detection.dataset import DetectionDataConfig, DetectionEvalData
from sparse3d.detection.detectors.centerpoint import CenterPoint, CenterPointConfig
from sparse3d.detection.nuscenes.eval.compare import max_abs_diff
from sparse3d.engine.run import load_trained_method
from sparse3d.io.atomic import write_json_atomic
from sparse3d.nn.bev import scatter_to_bev
from sparse3d.nn.spconv_compat import (
    from_spconv,
    patch_spconv_cpu_stream,
    spconv_voxel_res_backbone,
    to_spconv,
)
from sparse3d.synthetic.nuscenes import NuScenesSynthConfig, write_synthetic_nuscenes

sys.path.insert(0, str(Path(__file__).parent))
from bench_nusc_eval import run_devkit  # noqa: E402

VERSION = "v1.0-synth"
BIN = Path(sys.executable).parent


def world(root: Path, seed: int, scenes: int, samples: int, sweeps: int, val_fraction: float) -> Path:
    """A generated database (reused when it is already there)."""
    if (root / VERSION).is_dir():
        return root
    config = NuScenesSynthConfig(seed=seed, num_scenes=scenes, samples_per_scene=samples, sweeps_per_sample=sweeps,
                                 val_fraction=val_fraction)
    return write_synthetic_nuscenes(root, config)


def train(method: str, data: Path, run: Path, steps: int | None, threads: int) -> float:
    """Trains (or resumes) the run, for ``steps`` steps or the preset's; returns the
    training minutes recorded in its metrics."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [str(BIN / "sparse3d-train"), f"method={method}", "preset=cpu", f"data={data}", f"output={run}",
               "trainer.eval_every=0", "trainer.progress=false"]
    if steps is not None:
        command.append(f"trainer.max_steps={steps}")
    subprocess.run(command, env=env, check=True)
    history = json.loads((run / "metrics.json").read_text())
    return history["train"][-1]["time"]["elapsed_s"] / 60


def score(method, root: Path, out: Path) -> dict:
    """Our summary and the devkit's on the validation split of ``root``."""
    ours = method.evaluate(out, dataroot=root, version=VERSION, split="synth_val")
    devkit = run_devkit(root, VERSION, "synth_val", out / "results.json", out / "devkit")
    return {"mAP": ours["mean_ap"], "NDS": ours["nd_score"], "devkit_NDS": devkit["nd_score"],
            "max_abs_diff": max_abs_diff(devkit, ours)}


def stage_times(model, batch, encoder=None) -> dict[str, float]:
    """Seconds per inference stage on one batch; ``encoder``: a spconv 3D backbone instead of ours."""
    times = {}

    def timed(name, fn):
        start = time.perf_counter()
        out = fn()
        times[name] = times.get(name, 0.0) + time.perf_counter() - start
        return out

    with torch.no_grad():
        voxels = timed("voxelize", lambda: model.vfe(batch.points, batch.batch_size, batch.batch_index))
        if encoder is None:
            bev = timed("3d_backbone", lambda: model.encode(voxels))
        else:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            zyx = model.backbone_3d.to_zyx(voxels)
            bev = timed("3d_backbone", lambda: scatter_to_bev(from_spconv(encoder(to_spconv(zyx)), check=False), axes="zyx"))
            torch.set_num_threads(threads)
        features = timed("bev", lambda: model.backbone_2d(bev))
        preds = timed("head", lambda: model.dense_head(features))
        timed("decode_nms", lambda: model.detections(preds))
    return times


def inference(model, data: DetectionEvalData, frames: int, repeats: int, threads: int, with_spconv: bool) -> dict:
    """Median milliseconds per frame and stage, ours (also under CPU autocast to bfloat16,
    where the CPU has bf16 dot products) and (centerpoint) the spconv-built network."""
    torch.set_num_threads(threads)
    model = model.eval()
    batches = [b for _, b in zip(range(frames), data.batches(1))]
    encoder = None
    if with_spconv:
        patch_spconv_cpu_stream()
        encoder = spconv_voxel_res_backbone(model.config.point_features, tuple(model.config.encoder_channels))
        encoder.load_state_dict(model.backbone_3d.state_dict())
        encoder.train()
    runs = {"ours": [], "ours_bf16": [], "spconv": []}
    for repeat in range(repeats + 1):  # the first round warms up
        for batch in batches:
            ours = stage_times(model, batch)
            theirs = stage_times(model, batch, encoder) if encoder is not None else None
            low = None
            if bf16_dot_products():
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    low = stage_times(model, batch)
            if repeat:
                runs["ours"].append(ours)
                if theirs:
                    runs["spconv"].append(theirs)
                if low:
                    runs["ours_bf16"].append(low)
    return {side: {stage: 1e3 * statistics.median(r[stage] for r in rows) for stage in rows[0]}
            for side, rows in runs.items() if rows}


def full_size(work: Path, args) -> dict:
    """Inference of the full nuScenes CenterPoint (random weights) on 10-sweep synthetic frames."""
    root = world(work / "world_10sweeps", args.train_seed, 1, args.frames, 9, 1.0)
    data = DetectionDataConfig(version=VERSION, val_split="synth_val", num_sweeps=10)
    torch.manual_seed(0)
    model = CenterPoint(CenterPointConfig(), data.point_cloud_range, data.class_names)
    frames = DetectionEvalData(data, root)
    points = statistics.mean(len(frames.sample(i).points) for i in range(min(args.frames, len(frames))))
    timing = inference(model, frames, args.frames, args.repeats, args.threads, with_spconv=True)
    for side, stages in timing.items():
        print(f"full-size centerpoint, {side}: {sum(stages.values()):.0f} ms/frame ({points:.0f} points) "
              + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()))
    return {"points_per_frame": points, **{f"{side}_ms_by_stage": stages for side, stages in timing.items()}}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=["centerpoint", "dsvt"], default="centerpoint")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps (default: the cpu preset's own schedule)")
    parser.add_argument("--train-seed", type=int, default=0)
    parser.add_argument("--val-seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--scenes", type=int, default=16, help="scenes of the training world")
    parser.add_argument("--val-scenes", type=int, default=4, help="scenes of each validation world")
    parser.add_argument("--samples", type=int, default=10, help="keyframes per scene")
    parser.add_argument("--sweeps", type=int, default=4, help="sweeps between keyframes (the cpu presets read 5 per sample)")
    parser.add_argument("--frames", type=int, default=5, help="validation frames timed")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the frames")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=str, default=None, help="keep the worlds and runs here (DIR/<method> is the run)")
    parser.add_argument("--json", type=str, default=None, help="write the results as JSON here")
    parser.add_argument("--full-size", action="store_true",
                        help="only time the full nuScenes CenterPoint (random weights) on 10-sweep frames")
    args = parser.parse_args(argv)
    if args.full_size:
        with tempfile.TemporaryDirectory() as tmp:
            report = full_size(Path(args.output or tmp), args)
        if args.json:
            write_json_atomic(Path(args.json), report, indent=2)
        return report

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.output or tmp)
        train_world = world(work / f"world_{args.train_seed}", args.train_seed, args.scenes, args.samples, args.sweeps, 0.25)
        val_worlds = {seed: world(work / f"world_{seed}", seed, args.val_scenes, args.samples, args.sweeps, 1.0)
                      for seed in args.val_seeds}
        run = work / args.method
        minutes = train(args.method, train_world, run, args.steps, args.threads)
        _, method, step = load_trained_method(run, torch.device("cpu"))
        scores = {seed: score(method, root, run / f"eval_world_{seed}") for seed, root in val_worlds.items()}
        bf16_scores = {}
        if bf16_dot_products():
            method.config.precision = "bf16"  # the same weights, predicting under CPU autocast
            bf16_scores = {seed: score(method, root, run / f"eval_world_{seed}_bf16") for seed, root in val_worlds.items()}
            method.config.precision = "fp32"
        frames = DetectionEvalData(method.config.datamanager, next(iter(val_worlds.values())))
        timing = inference(method.model, frames, args.frames, args.repeats, args.threads, args.method == "centerpoint")

    ms_ours = sum(timing["ours"].values())
    ms_spconv = sum(timing["spconv"].values()) if "spconv" in timing else None
    report = {
        "method": args.method, "steps": step, "train_minutes": minutes,
        "mAP": statistics.mean(s["mAP"] for s in scores.values()),
        "NDS": statistics.mean(s["NDS"] for s in scores.values()),
        "devkit_NDS": statistics.mean(s["devkit_NDS"] for s in scores.values()),
        "max_abs_diff_vs_devkit": max(s["max_abs_diff"] for s in scores.values()),
        "per_world": {str(seed): s for seed, s in scores.items()},
        "infer_ms_per_frame": ms_ours, "infer_ms_by_stage": timing["ours"],
        "spconv_ms_per_frame": ms_spconv, "spconv_ms_by_stage": timing.get("spconv"),
        "infer_speedup_vs_spconv": ms_spconv / ms_ours if ms_spconv else None,
    }
    if bf16_scores:
        ms_bf16 = sum(timing["ours_bf16"].values())
        report |= {"bf16_mAP": statistics.mean(s["mAP"] for s in bf16_scores.values()),
                   "bf16_NDS": statistics.mean(s["NDS"] for s in bf16_scores.values()),
                   "bf16_max_abs_diff_vs_devkit": max(s["max_abs_diff"] for s in bf16_scores.values()),
                   "bf16_infer_ms_per_frame": ms_bf16, "bf16_infer_ms_by_stage": timing["ours_bf16"],
                   "bf16_infer_speedup_vs_fp32": ms_ours / ms_bf16}
    for seed, s in scores.items():
        print(f"world {seed}: mAP {s['mAP']:.4f}  NDS {s['NDS']:.4f}  devkit NDS {s['devkit_NDS']:.4f}  "
              f"max |diff| {s['max_abs_diff']:.1e}")
    if bf16_scores:
        print(f"precision=bf16: mAP {report['bf16_mAP']:.4f}  NDS {report['bf16_NDS']:.4f} (fp32 {report['mAP']:.4f} / "
              f"{report['NDS']:.4f}); inference {report['bf16_infer_speedup_vs_fp32']:.2f}x fp32")
    print(f"{'stage (ms/frame)':18}{'ours':>10}{'ours bf16':>11}{'spconv 3D':>12}")
    for stage, ms in timing["ours"].items():
        low = f"{timing['ours_bf16'][stage]:>11.1f}" if "ours_bf16" in timing else " " * 11
        theirs = f"{timing['spconv'][stage]:>12.1f}" if "spconv" in timing else ""
        print(f"{stage:18}{ms:>10.1f}{low}{theirs}")
    if args.json:
        write_json_atomic(Path(args.json), report, indent=2)
    speed = f", inference {ms_ours:.0f} ms/frame" + (f" ({report['infer_speedup_vs_spconv']:.2f}x the spconv-built network)"
                                                      if ms_spconv else "")
    print(f"bench_detection {args.method}: NDS {report['NDS']:.4f} (devkit {report['devkit_NDS']:.4f}), mAP "
          f"{report['mAP']:.4f} on {len(scores)} unseen worlds after {step} steps / {minutes:.1f} min{speed}")
    return report


if __name__ == "__main__":
    main()
