"""sparse3d-view run=RUN_DIR [port=8080] [host=127.0.0.1]: the interactive web viewer.

Shows the run's Gaussians, training cameras and latest metrics in the browser, and
follows training: a newer checkpoint refreshes the scene.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

from sparse3d.cli.overrides import fail, parse_config, split_assignments
from sparse3d.engine.checkpoint import CheckpointError
from sparse3d.engine.config import ConfigError

PROG = "sparse3d-view"


@dataclass
class ViewCommand:
    """Open a run in the web viewer."""

    run: Path
    """Run directory written by sparse3d-train (it may still be training)."""
    port: int = 8080
    """TCP port of the viewer."""
    host: str = "127.0.0.1"
    """Interface to bind; the default keeps the viewer private to this machine."""


def main(command: ViewCommand) -> None:
    """Serves the viewer until interrupted."""
    from sparse3d.viewer.app import RunViewer

    viewer = RunViewer(command.run, command.host, command.port)
    viewer.refresh()
    print(f"sparse3d: viewer at http://{command.host}:{viewer.port} (Ctrl-C to stop)")
    try:
        viewer.serve_forever()
    except KeyboardInterrupt:
        pass


def entrypoint(argv: list[str] | None = None) -> None:
    """Console script: ``run=RUN_DIR`` plus optional ``port=`` and ``host=``."""
    assignments, wants_help = split_assignments(sys.argv[1:] if argv is None else argv, PROG)
    if "run" not in assignments and not wants_help:
        fail(PROG, f"missing run=RUN_DIR (see {PROG} --help)")
    command = parse_config(ViewCommand(run=Path()), assignments, PROG, ViewCommand.__doc__, wants_help)
    try:
        main(command)
    except (ConfigError, CheckpointError) as err:
        fail(PROG, str(err))


if __name__ == "__main__":
    entrypoint()
