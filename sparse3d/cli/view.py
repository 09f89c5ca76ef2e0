"""sparse3d-view run=RUN_DIR | ply=FILE [port=8080] [host=127.0.0.1]: the interactive web viewer.

Shows what the run's method draws (its scene layers: Gaussians, cameras, points, boxes,
meshes) and its latest metrics in the browser, and follows training: a newer checkpoint
refreshes the scene. ``ply=`` shows a 3DGS PLY file instead (any tool's). The render
panel shows the method's own render of the browser's camera.

The viewer is a sibling layer of the CLI, not below it, so it is found through the entry
point ``app`` in the group ``sparse3d.viewer`` (sparse3d's pyproject.toml declares it)
rather than imported; it needs the ``viewer`` extra (viser).
"""

import socket
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

from sparse3d.cli.overrides import fail, parse_config, split_assignments
from sparse3d.engine.checkpoint import CheckpointError
from sparse3d.engine.config import ConfigError, between, check_ranges

PROG = "sparse3d-view"
VIEWER_GROUP = "sparse3d.viewer"
INSTALL_HINT = "pip install 'sparse3d[viewer]'"


class ViewerUnavailableError(RuntimeError):
    """No viewer is installed, or it cannot be imported (e.g. viser is missing)."""


@dataclass
class ViewCommand:
    """Open a run, or a 3DGS PLY file, in the web viewer."""

    run: Path | None = None
    """Run directory written by sparse3d-train (it may still be training, or not have
    written its first checkpoint yet: the viewer waits for it)."""
    ply: Path | None = None
    """A 3DGS PLY file to show instead of a run (the reference layout, any SH degree)."""
    port: int = field(default=8080, metadata=between(0, 65535))
    """TCP port of the viewer (0 picks a free one; a port in use is answered by the next free one)."""
    host: str = "127.0.0.1"
    """Interface to bind; the default keeps the viewer private to this machine."""

    def __post_init__(self) -> None:
        check_ranges(self)


class ViewArgumentError(ValueError):
    """No source or two, a source that does not exist, or a host that is not an address of
    this machine."""


def check_command(command: ViewCommand) -> None:
    """Checks what the viewer would only find out after starting its server thread.

    Raises:
        ViewArgumentError: if not exactly one of ``run`` and ``ply`` is given, ``run`` is
            not a directory or ``ply`` not a file, or ``command.host`` cannot be bound.
    """
    if (command.run is None) == (command.ply is None):
        given = "both run= and ply=" if command.run is not None else "missing run=PATH"
        raise ViewArgumentError(f"{given}: give one source, run=RUN_DIR or ply=FILE")
    if command.ply is not None:
        if not Path(command.ply).is_file():
            raise ViewArgumentError(f"ply={command.ply}: no such file")
    else:
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


def load_viewer() -> Callable[..., None]:
    """The viewer's ``serve(run_dir, host, port, ply=None)``, which serves until interrupted.

    Raises:
        ViewerUnavailableError: if no ``app`` entry point is in the group
            ``sparse3d.viewer``, or loading it fails for a missing module.
    """
    entry = next(iter(metadata.entry_points(group=VIEWER_GROUP, name="app")), None)
    if entry is None:
        raise ViewerUnavailableError(
            f"no viewer is installed (no entry point 'app' in group {VIEWER_GROUP}); reinstall sparse3d: {INSTALL_HINT}"
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
    serve(command.run, command.host, command.port, ply=command.ply)


def entrypoint(argv: list[str] | None = None) -> None:
    """Console script: ``run=RUN_DIR`` or ``ply=FILE``, plus optional ``port=`` and ``host=``."""
    assignments, wants_help = split_assignments(sys.argv[1:] if argv is None else argv, PROG)
    command = parse_config(ViewCommand(), assignments, PROG, ViewCommand.__doc__, wants_help)
    try:
        main(command)
    except (ConfigError, CheckpointError, ViewerUnavailableError, ViewArgumentError, ValueError) as err:
        fail(PROG, str(err))


if __name__ == "__main__":
    entrypoint()
