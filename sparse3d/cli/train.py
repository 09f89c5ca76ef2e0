"""sparse3d-train method=NAME data=PATH [key=value ...]: train a method.

Run it again with the same arguments to resume from the last checkpoint; launch it with
``torchrun --nproc_per_node=N`` to train on N processes. Ctrl-C (SIGINT) or SIGTERM finishes
the current step, writes a checkpoint, prints the command that resumes, and exits with 130.
"""

import os
import shlex
import sys
import threading
from pathlib import Path

from sparse3d.cli.overrides import fail, parse_config, split_assignments
from sparse3d.cli.view import ViewerUnavailableError, load_viewer
from sparse3d.engine.config import ConfigError, MethodConfig
from sparse3d.engine.distributed import close_world, init_world
from sparse3d.engine.registry import MethodSpecification, discover_methods
from sparse3d.engine.trainer import (
    RunDirError,
    Trainer,
    TrainingInterrupted,
    default_run_dir,
    resolve_device,
)

PROG = "sparse3d-train"
INTERRUPTED = 130  # the shell's code for a process ended by SIGINT (128 + 2)


def main(method_name: str, config: MethodConfig, viewer: bool = False) -> Path:
    """Trains ``config`` (of the registered method ``method_name``); returns the run directory.

    With ``viewer``, the web viewer follows the run from this process, with a button that
    pauses training, and stays open after training until Ctrl-C.

    Raises:
        ConfigError: ``viewer`` with several training processes.
        ViewerUnavailableError: ``viewer`` without the viewer installed.
    """
    world = init_world(resolve_device(config.trainer.device))
    stop_viewer = None
    try:
        if viewer and world.size > 1:
            raise ConfigError("viewer=true needs one training process (its pause button pauses this one); "
                              f"got {world.size}: run sparse3d-view run=RUN_DIR beside the training instead")
        run_dir = config.output or default_run_dir(config, method_name)
        trainer = Trainer(config, method_name, run_dir, world)
        if viewer:
            stop_viewer = load_viewer("follow")(Path(run_dir), trainer.pause)
        metrics = trainer.train()
        if world.is_main:
            print(f"sparse3d: run directory {run_dir}")
            print(f"sparse3d: final metrics {metrics}")
            for line in trainer.method.summary(Path(run_dir)):
                print(f"sparse3d: {line}")
            print(f"sparse3d: evaluate with `sparse3d-eval run={run_dir}`, view with `sparse3d-view run={run_dir}`")
        if stop_viewer is not None:
            print("sparse3d: training done; the viewer stays open until Ctrl-C", flush=True)
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                pass
    finally:
        if stop_viewer is not None:
            stop_viewer()
        close_world(world)
    return run_dir


def methods_help(methods: dict[str, MethodSpecification]) -> str:
    """The top-level help text: usage and the installed methods."""
    width = max((len(n) for n in methods), default=0)
    lines = [
        f"usage: {PROG} method=NAME [preset=NAME] [data=PATH] [viewer=true] [key=value ...]",
        "",
        "Train a method. `method=NAME --help` lists that method's keys with defaults;",
        "`preset=NAME` starts from one of its presets (listed beside it) instead;",
        "`viewer=true` serves the web viewer from the training process, with a pause button.",
        "",
        "methods:",
        *(f"  {name:<{width}}  {spec.description}{_presets(spec)}" for name, spec in methods.items()),
    ]
    if not methods:
        lines.append("  (none installed)")
    return "\n".join(lines)


def _presets(spec: MethodSpecification) -> str:
    return f" Presets: {', '.join(sorted(spec.presets))}." if spec.presets else ""


def entrypoint(argv: list[str] | None = None) -> None:
    """Console script: parses ``key=value`` arguments, then calls :func:`main`."""
    assignments, wants_help = split_assignments(sys.argv[1:] if argv is None else argv, PROG)
    try:
        methods = discover_methods()
    except ConfigError as err:
        fail(PROG, str(err))
    name = assignments.pop("method", None)
    if name is None:
        if wants_help:
            print(methods_help(methods))
            raise SystemExit(0)
        fail(PROG, f"method=NAME is required ({_installed(methods)})")
    if name not in methods:
        fail(PROG, f"unknown method '{name}' ({_installed(methods)})")
    spec = methods[name]
    viewer = assignments.pop("viewer", "false").lower()
    if viewer not in ("true", "false"):
        fail(PROG, f"viewer={viewer}: expected true or false")
    try:
        default = spec.default_config(assignments.pop("preset", None))
    except ConfigError as err:
        fail(PROG, str(err))
    config = parse_config(default, assignments, f"{PROG} method={name}", spec.description, wants_help)
    if config.output is not None and config.output.exists() and not config.output.is_dir():
        fail(PROG, f"output={config.output} is a file, not a run directory")
    try:
        main(name, config, viewer == "true")
    except (RunDirError, ConfigError, OSError, ValueError, ViewerUnavailableError) as err:
        # Bad input (a missing data folder, a malformed file, a run of another config)
        # is reported by its message, which names the file and the field.
        fail(PROG, str(err))
    except TrainingInterrupted as stop:
        if stop.checkpoint is not None:  # only the main process wrote one, and speaks
            print(resume_hint(stop, sys.argv[1:] if argv is None else argv), flush=True)
        raise SystemExit(INTERRUPTED) from None
    except KeyboardInterrupt:
        # Ctrl-C before training started (loading data), or a second one during a step.
        print(f"{PROG}: interrupted; no checkpoint written for the current step", file=sys.stderr, flush=True)
        raise SystemExit(INTERRUPTED) from None


def _installed(methods: dict[str, MethodSpecification]) -> str:
    """One line naming the installed methods, for errors (``--help`` describes them)."""
    names = ", ".join(sorted(methods)) or "none installed"
    return f"methods: {names}; {PROG} --help describes them"


def resume_hint(stop: TrainingInterrupted, args: list[str]) -> str:
    """What to print after an interruption: the checkpoint, and the command that resumes."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = [PROG] if world_size == 1 else ["torchrun", f"--nproc_per_node={world_size}", "-m", "sparse3d.cli.train"]
    command = shlex.join([*launcher, *args])
    if not any(a.startswith("output=") for a in args):  # the default run dir is relative to the working directory
        command = f"cd {shlex.quote(os.getcwd())} && {command}"
    return (
        f"sparse3d: {stop.signal_name}: stopped after step {stop.step}; checkpoint {stop.checkpoint}\n"
        f"sparse3d: resume with: {command}"
    )


if __name__ == "__main__":
    entrypoint()
