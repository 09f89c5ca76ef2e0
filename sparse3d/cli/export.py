"""sparse3d-export WHAT run=RUN_DIR [key=value ...]: export a trained run.

    sparse3d-export mesh run=RUN_DIR [out=PATH] [resolution=128] ...   TSDF mesh -> RUN_DIR/mesh.ply
    sparse3d-export orbit run=RUN_DIR [frames=24] [out=DIR] ...        orbit -> RUN_DIR/orbit.png (+ orbit.mp4)
    sparse3d-export density run=RUN_DIR [resolution=256] [level=0.005] density mesh -> RUN_DIR/density_mesh.ply

mesh and orbit work for any method whose get_outputs_for_camera renders rgb and alpha
(and depth, for the mesh), and place their views around the cameras the method draws
(its training views); density meshes the density of a radiance field (strivec, tensorf)
by marching cubes. `sparse3d-export WHAT --help` lists the keys with their defaults.
"""

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import tyro

from sparse3d.cli.overrides import fail, parse_config, split_arguments
from sparse3d.engine.checkpoint import CheckpointError
from sparse3d.engine.config import ConfigError
from sparse3d.engine.method import Method
from sparse3d.engine.scene import CameraFrusta
from sparse3d.fields.mesh import (
    MarchingCubesDependencyError,
    marching_cubes_mesh,
    opacity_grid,
)
from sparse3d.geometry.cameras import Cameras
from sparse3d.methods.radiance_field import RadianceFieldMethod
from sparse3d.reconstruction.mesh import (
    MeshDependencyError,
    TSDFConfig,
    import_open3d,
    import_trimesh,
    write_mesh,
    write_mesh_ply,
)
from sparse3d.reconstruction.orbit import OrbitConfig, write_orbit

PROG = "sparse3d-export"


@dataclass
class MeshExport(TSDFConfig):
    """Fuse the run's rendered depth from views all around the object into a coloured
    triangle mesh (TSDF fusion with open3d, written with trimesh). Needs the extra:
    pip install 'sparse3d[mesh]'."""

    run: Path = field(kw_only=True)
    """Run directory written by sparse3d-train."""
    out: Path | None = field(default=None, kw_only=True)
    """The PLY file to write; None: RUN_DIR/mesh.ply."""


@dataclass
class OrbitExport(OrbitConfig):
    """Render views once round the ellipse through the run's input cameras; writes
    orbit.png (the frames as a grid) and, with imageio-ffmpeg installed, orbit.mp4."""

    run: Path = field(kw_only=True)
    """Run directory written by sparse3d-train."""
    out: Path | None = field(default=None, kw_only=True)
    """The folder to write orbit.png and orbit.mp4 into; None: RUN_DIR."""


@dataclass
class DensityExport:
    """Mesh a radiance field's density by marching cubes (scikit-image) on its opacity over
    one sampling step, on a grid over the scene box (TensoRF's export). Needs the extra:
    pip install 'sparse3d[mesh]'."""

    run: Path = field(kw_only=True)
    """Run directory of a radiance-field method (strivec, tensorf)."""
    resolution: int = 256
    """Grid nodes along the scene box's longest side."""
    level: float = 0.005
    """The opacity of the surface."""
    out: Path | None = field(default=None, kw_only=True)
    """The PLY file to write; None: RUN_DIR/density_mesh.ply."""


EXPORTS = {"mesh": MeshExport, "orbit": OrbitExport, "density": DensityExport}
"""Each export, by the name given after sparse3d-export."""


def input_cameras(method: Method) -> Cameras:
    """The cameras the method draws (its ``CameraFrusta`` scene layers, the first of them:
    a method lists its training views).

    Raises:
        ValueError: the method draws no cameras.
    """
    frusta = [layer for layer in method.get_scene_layers() if isinstance(layer, CameraFrusta)]
    if not frusta:
        raise ValueError(f"{type(method).__name__} draws no cameras (no CameraFrusta scene layer); "
                         "the export places its views around the training cameras")
    return frusta[0].cameras


def load_run(run: Path) -> Method:
    """The run's method at its newest checkpoint, on the GPU when there is one."""
    from sparse3d.engine.run import load_trained_method

    if Path(run).exists() and not Path(run).is_dir():
        raise ValueError(f"run={run} is a file, not a run directory")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name, method, step = load_trained_method(Path(run), device)
    print(f"sparse3d: loaded the {name} run {run} at step {step}")
    return method


def export_mesh(command: MeshExport) -> Path:
    """Writes the TSDF mesh of ``command.run``; returns its path."""
    import_open3d()  # before loading anything: a missing extra is found in a second
    import_trimesh()
    method = load_run(command.run)
    out = command.out or Path(command.run) / "mesh.ply"
    mesh = write_mesh(method, input_cameras(method), out, command, progress=_progress())
    print(f"sparse3d: wrote {out} ({len(mesh.vertices)} vertices, {len(mesh.faces)} faces)")
    return out


def export_orbit(command: OrbitExport) -> list[Path]:
    """Writes the orbit strip (and video) of ``command.run``; returns the files written."""
    method = load_run(command.run)
    files = write_orbit(method, input_cameras(method), command.out or Path(command.run), command, progress=_progress())
    written = [files.strip] + ([files.video] if files.video else [])
    for path in written:
        print(f"sparse3d: wrote {path}")
    if files.skipped:
        print(f"sparse3d: skipped orbit.mp4: {files.skipped}")
    return written


def export_density(command: DensityExport) -> Path:
    """Writes the marching-cubes mesh of ``command.run``'s density; returns its path."""
    import_trimesh()
    method = load_run(command.run)
    if not isinstance(method, RadianceFieldMethod):
        raise ValueError(f"density meshes a radiance field's density; {type(method).__name__} has none (use mesh for TSDF fusion)")
    if command.resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {command.resolution}")
    grid, spacing = opacity_grid(method.density, method.box_lower.to(method.device), method.box_upper.to(method.device),
                                 command.resolution, method.sample_step())
    mesh = marching_cubes_mesh(grid, method.box_lower, spacing, command.level)
    out = command.out or Path(command.run) / "density_mesh.ply"
    write_mesh_ply(out, mesh)
    print(f"sparse3d: wrote {out} ({len(mesh.vertices)} vertices, {len(mesh.faces)} faces)")
    return out


def _progress() -> bool:
    """Whether to show progress bars: only on a terminal, so that an error stays the one
    line on a captured stderr."""
    return sys.stderr.isatty()


def main(command: MeshExport | OrbitExport | DensityExport) -> None:
    """Runs one export."""
    if isinstance(command, MeshExport):
        export_mesh(command)
    elif isinstance(command, DensityExport):
        export_density(command)
    else:
        export_orbit(command)


def _usage() -> str:
    return f"usage: {__doc__.strip()}\n"


def entrypoint(argv: list[str] | None = None) -> None:
    """Console script: ``WHAT`` (mesh, orbit or density), then ``key=value`` settings."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(_usage(), end="")
        raise SystemExit(0)
    if not args or args[0] not in EXPORTS:
        given = f"unknown export '{args[0]}'" if args and "=" not in args[0] else "missing WHAT"
        fail(PROG, f"{given}: {PROG} {{{'|'.join(EXPORTS)}}} run=RUN_DIR [key=value ...] (see {PROG} --help)")
    what, kind = args[0], EXPORTS[args[0]]
    assignments, _, wants_help = split_arguments(args[1:], PROG)
    command = parse_config(kind(run=tyro.MISSING), assignments, f"{PROG} {what}", kind.__doc__, wants_help)
    try:
        main(command)
    except (ConfigError, CheckpointError, MeshDependencyError, MarchingCubesDependencyError, ValueError, NotImplementedError) as err:
        # Bad input (no run there, no checkpoint, a method that renders no depth or
        # cannot be viewed from a camera) and a missing extra are reported by their message.
        fail(PROG, str(err))
    except OSError as err:  # a file where a folder must be, no permission to write
        fail(PROG, str(err) if not err.filename else f"{err.filename}: {err.strerror or err}")


if __name__ == "__main__":
    entrypoint()
