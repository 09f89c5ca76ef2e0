"""sparse3d-view run=RUN_DIR [compare=RUN_DIR] | ply=FILE | data=FOLDER [views=K] |
nuscenes=DATAROOT [version=... split=... results=...] [port=8080] [host=127.0.0.1]: the
interactive web viewer.

Shows what the run's method draws (its scene layers: Gaussians, cameras, points, boxes,
meshes) and its latest metrics in the browser, and follows training: a newer checkpoint
refreshes the scene. ``ply=`` shows a 3DGS PLY file instead (any tool's). The render
panel shows the method's own render of the browser's camera. ``data=`` shows a multi-view
data set before any training (its cameras, images and points). ``nuscenes=`` browses a
nuScenes database sample by sample (LiDAR points, GT boxes), with a submission's
predictions coloured by the evaluation's matching when ``results=`` is given. ``compare=``
puts another run's render beside the run's in the render panel (split screen).

The viewer is a sibling layer of the CLI, not below it, so it is found through the entry
point ``app`` in the group ``sparse3d.viewer`` (sparse3d's pyproject.toml declares it)
rather than imported; it needs the ``viewer`` extra (viser).
"""

import socket
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from sparse3d.cli.overrides import fail, parse_config, split_assignments
from sparse3d.engine.checkpoint import CheckpointError
from sparse3d.engine.config import ConfigError, at_least, between, check_ranges

PROG = "sparse3d-view"
VIEWER_GROUP = "sparse3d.viewer"
INSTALL_HINT = "pip install 'sparse3d[viewer]'"


class ViewerUnavailableError(RuntimeError):
    """No viewer is installed, or it cannot be imported (e.g. viser is missing)."""


@dataclass
class ViewCommand:
    """Open a run, a 3DGS PLY file, a multi-view data set or a nuScenes database in the web viewer."""

    run: Path | None = None
    """Run directory written by sparse3d-train (it may still be training, or not have
    written its first checkpoint yet: the viewer waits for it)."""
    compare: Path | None = None
    """With run=: a second run on the same data; the render panel shows this run's render
    (left half) beside the other's (right half), from the browser's camera."""
    ply: Path | None = None
    """A 3DGS PLY file to show instead of a run (the reference layout, any SH degree)."""
    data: Path | None = None
    """A multi-view data folder (nerfstudio, Blender or COLMAP) to show instead: cameras,
    images, initial points."""
    views: int | None = field(default=None, metadata=at_least(1))
    """With data=: show the folder's sparse_<views>.txt split (the sparse-view protocol)."""
    nuscenes: Path | None = None
    """A nuScenes dataroot (real or from ``sparse3d-data nuscenes-synth``) to browse instead."""
    version: str = "v1.0-trainval"
    """With nuscenes=: the table folder, e.g. v1.0-mini or v1.0-synth."""
    split: str | None = None
    """With nuscenes=: only this split's scenes (official or from splits.json); default all."""
    results: Path | None = None
    """With nuscenes=: a detection submission (JSON) whose boxes are shown beside the GT."""
    port: int = field(default=8080, metadata=between(0, 65535))
    """TCP port of the viewer (0 picks a free one; a port in use is answered by the next free one)."""
    host: str = "127.0.0.1"
    """Interface to bind; the default keeps the viewer private to this machine."""

    def __post_init__(self) -> None:
        check_ranges(self)


class ViewArgumentError(ValueError):
    """No source or two, a source that does not exist, an option without its source, or a
    host that is not an address of this machine."""


def check_command(command: ViewCommand) -> None:
    """Checks what the viewer would only find out after starting its server thread.

    Raises:
        ViewArgumentError: if not exactly one of ``run``, ``ply``, ``data`` and
            ``nuscenes`` is given, ``run``, ``data`` or ``nuscenes`` is not a directory,
            ``ply`` or ``results`` not a file, ``results`` or ``split`` is given without
            ``nuscenes``, ``views`` without ``data``, ``compare`` without ``run`` or not a
            directory, or
            ``command.host`` cannot be bound.
    """
    sources = [f"{name}=" for name in ("run", "ply", "data", "nuscenes") if getattr(command, name) is not None]
    if len(sources) != 1:
        given = f"both {' and '.join(sources)}" if sources else "missing run=PATH"
        raise ViewArgumentError(f"{given}: give one source, run=RUN_DIR, ply=FILE, data=FOLDER or nuscenes=DATAROOT")
    if command.nuscenes is None and (command.results is not None or command.split is not None):
        raise ViewArgumentError("results= and split= go with nuscenes=DATAROOT")
    if command.data is None and command.views is not None:
        raise ViewArgumentError("views= goes with data=FOLDER")
    if command.compare is not None:
        if command.run is None:
            raise ViewArgumentError("compare= goes with run=RUN_DIR")
        if not Path(command.compare).is_dir():
            raise ViewArgumentError(f"compare={command.compare}: no such run directory")
    if command.data is not None and not Path(command.data).is_dir():
        raise ViewArgumentError(f"data={command.data}: no such folder")
    if command.ply is not None and not Path(command.ply).is_file():
        raise ViewArgumentError(f"ply={command.ply}: no such file")
    if command.results is not None and not Path(command.results).is_file():
        raise ViewArgumentError(f"results={command.results}: no such file")
    if command.nuscenes is not None and not (Path(command.nuscenes) / command.version).is_dir():
        raise ViewArgumentError(f"nuscenes={command.nuscenes}: no table folder {command.version}/ in it "
                                f"(version={command.version}; make one with sparse3d-data nuscenes-synth)")
    if command.run is not None:
        run = Path(command.run)
        if not run.exists():
            raise ViewArgumentError(f"run directory {run} does not exist (train one with sparse3d-train)")
        if not run.is_dir():
            raise ViewArgumentError(f"run={run} is a file, not a run directory")
    try:
        infos = socket.getaddrinfo(command.host, 0, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.bind(infos[0][4])  # port 0: checks the address only; viser handles a busy port
    except OSError as err:
        raise ViewArgumentError(f"cannot listen on host={command.host}: {err.strerror or err}") from err


def load_viewer(name: str = "app") -> Callable[..., Any]:
    """An entry point of the viewer: ``app`` is its ``serve(run_dir, host, port, ply=None,
    nuscenes=None, version=..., split=None, results=None, data=None, views=None)``, which
    serves until interrupted; ``follow`` is its ``follow_training(run_dir, pause, host,
    port)``, which serves a run from the training process and returns a function that
    stops it.

    Raises:
        ViewerUnavailableError: if no entry point ``name`` is in the group
            ``sparse3d.viewer``, or loading it fails for a missing module.
    """
    entry = next(iter(metadata.entry_points(group=VIEWER_GROUP, name=name)), None)
    if entry is None:
        raise ViewerUnavailableError(
            f"no viewer is installed (no entry point '{name}' in group {VIEWER_GROUP}); reinstall sparse3d: {INSTALL_HINT}"
        )
    try:
        return entry.load()
    except ModuleNotFoundError as err:
        raise ViewerUnavailableError(f"the viewer needs {err.name}, which is not installed: {INSTALL_HINT}") from err


def main(command: ViewCommand) -> None:
    """Serves the viewer until interrupted.

    Raises:
        ViewArgumentError: see :func:`check_command`.
        ViewerUnavailableError: see :func:`load_viewer`.
    """
    check_command(command)
    serve = load_viewer()
    serve(command.run, command.host, command.port, ply=command.ply, nuscenes=command.nuscenes,
          version=command.version, split=command.split, results=command.results, data=command.data,
          views=command.views, compare=command.compare)


def entrypoint(argv: list[str] | None = None) -> None:
    """Console script: ``run=RUN_DIR`` (with ``compare=``), ``ply=FILE``, ``data=FOLDER`` (with ``views=``) or
    ``nuscenes=DATAROOT`` (with ``version=``, ``split=``, ``results=``), plus optional
    ``port=`` and ``host=``."""
    assignments, wants_help = split_assignments(sys.argv[1:] if argv is None else argv, PROG)
    command = parse_config(ViewCommand(), assignments, PROG, ViewCommand.__doc__, wants_help)
    try:
        main(command)
    except (ConfigError, CheckpointError, ViewerUnavailableError, ViewArgumentError, ValueError) as err:
        fail(PROG, str(err))


if __name__ == "__main__":
    entrypoint()
