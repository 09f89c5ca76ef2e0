"""The stages of ``gaussianobject`` before refinement, each resumable in the run directory:

    hull.ply          stage hull: the visual hull's voxel centres and colours
    coarse/           stage coarse: a ``splat`` run from the hull (its point_cloud.ply)
    loo/              stage loo: per input view k, two ``splat`` runs that leave view k out
                      until densification ends (view_k_seen) or throughout (view_k_unseen),
                      the second resumed from the first's checkpoint at that step; then
                      noise.pt (the averaged parameter drift) and renders.pt (renders of
                      each left-out view by models that never saw it)
    repair_model/     stage repair_model: the repair network's training run
    stages.json       a restart asked by ``stage=NAME`` that has not finished yet

Training stages are engine runs: an interrupted one resumes from its last checkpoint, and
a finished one returns at once. Other stages write their file atomically at the end, so
its presence means done.
"""

import dataclasses
import shutil
from pathlib import Path

import torch
import torch.distributed as dist

from sparse3d.data.loader import load_multiview
from sparse3d.engine.checkpoint import (
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
)
from sparse3d.engine.distributed import World
from sparse3d.engine.trainer import train_stage
from sparse3d.io.atomic import save_torch_atomic, write_atomic, write_json_atomic
from sparse3d.io.read import read_json
from sparse3d.methods.gaussianobject.config import STAGES, GaussianObjectConfig
from sparse3d.methods.gaussianobject.repair_training import (
    check_repair_config,
    repair_training_config,
)
from sparse3d.methods.splat import SplatConfig, render_splats
from sparse3d.reconstruction.hull import visual_hull
from sparse3d.reconstruction.loo import average_noise, parameter_drift
from sparse3d.render.ply import read_points_ply, write_points_ply
from sparse3d.render.strategy.default import DefaultStrategy

SPLAT_PREFIX = "splats."
"""Where a splat checkpoint keeps the Gaussians in its method state."""


def run_stages(config: GaussianObjectConfig, world: World) -> None:
    """Runs (or resumes, or skips when done) every stage before refinement in ``config.output``."""
    run = Path(config.output)
    check_repair_config(config.repair)  # a wrong repair setting stops the run before the stages that precede it
    if config.stage is not None:
        restart_from(run, config.stage, world)
    if config.coarse.use_hull and not (run / "hull.ply").exists():
        _on_main(world, lambda: write_hull(config, run / "hull.ply"))
    train_stage(coarse_config(config), run / "coarse", world, "splat")
    if config.repair.kind == "none":
        return
    if not (run / "loo" / "noise.pt").exists():
        run_leave_one_out(config, run / "loo", world)
    train_stage(repair_training_config(config), run / "repair_model", world, name="gaussianobject-repair")


def restart_from(run: Path, stage: str, world: World) -> None:
    """Deletes the artefacts of ``stage`` and of every later stage, once: an interrupted
    restart resumes when the same command is given again (stages.json remembers it) until
    the run finishes (:func:`finish_restart`)."""
    record = run / "stages.json"
    if record.exists() and read_json(record).get("restart") == stage:
        return
    if world.is_main:
        later = STAGES[STAGES.index(stage):]
        artefacts = {
            "hull": ["hull.ply"],
            "coarse": ["coarse"],
            "loo": ["loo"],
            "repair_model": ["repair_model"],
            "refine": ["ckpt", "metrics.json", "tensorboard", "point_cloud.ply", "eval.json"],
        }
        for name in later:
            for item in artefacts[name]:
                path = run / item
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        run.mkdir(parents=True, exist_ok=True)
        write_json_atomic(record, {"restart": stage})
    _barrier(world)


def finish_restart(run: Path) -> None:
    """Forgets a finished restart, so that ``stage=NAME`` given again restarts again."""
    (Path(run) / "stages.json").unlink(missing_ok=True)


def stage_summary(run: Path) -> list[str]:
    """One line per finished stage of the run ``run``: its wall-clock time (summed over
    resumes and, for loo, over its runs) and its figure, read from the stages' metrics.json."""
    lines = []
    if (run / "hull.ply").exists():
        lines.append(f"hull: {len(read_points_ply(run / 'hull.ply')[0])} points")
    stages = {
        "coarse": ([run / "coarse"], lambda e: f"{int(e['num_gaussians'])} Gaussians, held-out PSNR {e['psnr']:.2f} dB"),
        "loo": (sorted((run / "loo").glob("view_*_*seen")), None),
        "repair_model": ([run / "repair_model"], lambda e: (
            f"leave-one-out renders {e['loo_psnr_before']:.2f} -> {e['loo_psnr_after']:.2f} dB after repair")),
        "refine": ([run], lambda e: f"held-out PSNR {e['psnr']:.2f} dB (GaussianObject protocol)"),
    }
    for name, (folders, describe) in stages.items():
        histories = [read_json(f / "metrics.json") for f in folders if (f / "metrics.json").exists()]
        if not histories:
            continue
        seconds = sum(h["train"][-1]["time"]["elapsed_s"] for h in histories if h["train"])
        evals = histories[-1]["eval"]
        figure = f", {describe(evals[-1])}" if describe and evals else ""
        lines.append(f"{name}: {seconds / 60:.1f} min{figure}")
    return lines


def write_hull(config: GaussianObjectConfig, path: Path) -> None:
    """Carves the visual hull from the input views' masks and writes its points."""
    data = load_multiview(config.data, config.datamanager.format, config.datamanager.num_train_views)
    if data.masks is None:
        raise ValueError(f"{data.source}: gaussianobject needs object masks (masks/ or images with alpha) for the visual hull")
    train = data.train_indices
    hull = visual_hull(data.cameras[train], data.masks[train], data.images[train], config.hull)
    write_points_ply(path, hull.points, hull.colors)


def coarse_config(config: GaussianObjectConfig, steps: int | None = None, strategy: DefaultStrategy | None = None) -> SplatConfig:
    """The ``splat`` config of the coarse stage, or with another schedule (``steps``,
    ``strategy``) of the leave-one-out runs."""
    steps = config.coarse.steps if steps is None else steps
    model = dataclasses.replace(config.model, strategy=strategy or config.coarse.strategy)
    if config.coarse.use_hull:
        model = dataclasses.replace(model, init="file", init_file=Path(config.output) / "hull.ply")
    trainer = dataclasses.replace(config.trainer, max_steps=steps, eval_every=steps, ckpt_every=min(500, steps))
    return SplatConfig(data=config.data, trainer=trainer, model=model, datamanager=config.datamanager)


def run_leave_one_out(config: GaussianObjectConfig, folder: Path, world: World) -> None:
    """Trains both leave-one-out branches of every input view, then writes noise.pt and
    renders.pt (see the module docstring)."""
    base = coarse_config(config, config.loo.steps, config.loo.strategy)
    branch_step = min(config.loo.strategy.refine_stop_iter, config.loo.steps)
    data = load_multiview(config.data, config.datamanager.format, config.datamanager.num_train_views)
    drifts, renders, views = [], [], []
    for k, view in enumerate(data.train_indices.tolist()):
        seen_dir, unseen_dir = folder / f"view_{k}_seen", folder / f"view_{k}_unseen"
        seen = dataclasses.replace(base, datamanager=dataclasses.replace(
            base.datamanager, leave_out=k, leave_out_until=branch_step))
        unseen = dataclasses.replace(base, datamanager=dataclasses.replace(base.datamanager, leave_out=k))
        fork_render = folder / f"view_{k}_fork.pt"
        # Both branches are the same run up to branch_step: train it once, then fork. The
        # render of view k at the fork is kept first: the copied checkpoint commits the fork.
        if not list_checkpoints(unseen_dir):
            train_stage(_with_steps(seen, branch_step), seen_dir, world, "splat")

            def fork() -> None:
                save_torch_atomic(fork_render, _render_view(_splats(seen_dir, branch_step), data, view, config))
                _copy_checkpoint(seen_dir, unseen_dir, branch_step)

            _on_main(world, fork)
        train_stage(seen, seen_dir, world, "splat")
        train_stage(unseen, unseen_dir, world, "splat")
        final_unseen = _splats(unseen_dir)
        drifts.append(parameter_drift(_splats(seen_dir), final_unseen))
        # The unseen branch never saw view k: its renders are real corruptions of it, at
        # the fork and at the end.
        renders += [torch.load(fork_render, weights_only=True), _render_view(final_unseen, data, view, config)]
        views += [view, view]
    noise = average_noise(drifts)
    _on_main(world, lambda: save_torch_atomic(folder / "renders.pt", {"images": torch.stack(renders), "views": torch.tensor(views)}))
    _on_main(world, lambda: save_torch_atomic(folder / "noise.pt", noise.to_dict()))


def _with_steps(config: SplatConfig, steps: int) -> SplatConfig:
    return dataclasses.replace(config, trainer=dataclasses.replace(config.trainer, max_steps=steps))


def _copy_checkpoint(source: Path, target: Path, step: int) -> None:
    """Starts run ``target`` from run ``source``'s checkpoint of ``step``."""
    path = checkpoint_path(target, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: shutil.copyfile(checkpoint_path(source, step), tmp))


def _splats(run_dir: Path, step: int | None = None) -> dict[str, torch.Tensor]:
    """The Gaussians of a splat run's newest checkpoint (or of ``step``)."""
    path = list_checkpoints(run_dir)[-1][1] if step is None else checkpoint_path(run_dir, step)
    state = load_checkpoint(path)["method"]
    return {k[len(SPLAT_PREFIX):]: v for k, v in state.items() if k.startswith(SPLAT_PREFIX)}


def _render_view(splats: dict[str, torch.Tensor], data, view: int, config: GaussianObjectConfig) -> torch.Tensor:
    """uint8 [H, W, 3] render of the Gaussians at data view ``view`` over white."""
    with torch.no_grad():
        rgb, _, _ = render_splats(splats, data.cameras[view], config.model.raster, config.model.sh_degree, torch.ones(1, 3))
    return (rgb[0, ..., :3].clamp(0, 1) * 255).round().to(torch.uint8)


def _on_main(world: World, work) -> None:
    """Runs ``work`` on the main process only; the others wait for it."""
    if world.is_main:
        work()
    _barrier(world)


def _barrier(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
