"""sparse3d-data NAME OUT [key=value ...]: generate the project's synthetic data sets.

    sparse3d-data objects OUT          multi-view object benchmark (the demo's default data)
    sparse3d-data nuscenes-synth OUT   synthetic nuScenes-format database
"""

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

from sparse3d.cli.overrides import fail, parse_config, split_arguments

PROG = "sparse3d-data"


@dataclass(frozen=True)
class Generator:
    """A data generator: its config dataclass and its writer, as "module:attribute" paths
    (imported only when chosen, to keep the command quick to start)."""

    config: str
    write: str
    description: str

    def load(self):
        """(config type, writer function)."""
        return _attribute(self.config), _attribute(self.write)


GENERATORS = {
    "objects": Generator(
        "sparse3d.synthetic.objects.generator:SyntheticObjectsConfig",
        "sparse3d.synthetic.objects.generator:write_synthetic_objects",
        "Render textured objects (anti-aliased RGB with soft alpha, masks, depth) in nerfstudio, Blender and COLMAP formats.",
    ),
    "nuscenes-synth": Generator(
        "sparse3d.synthetic.nuscenes:NuScenesSynthConfig",
        "sparse3d.synthetic.nuscenes:write_synthetic_nuscenes",
        "Write a nuScenes v1.0-format database with ray-cast LiDAR that the official devkit loads.",
    ),
}


def _attribute(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _usage() -> str:
    width = max(len(n) for n in GENERATORS)
    lines = [f"usage: {PROG} NAME OUT [key=value ...]", "", "Generate a synthetic data set.", "", "arguments:"]
    lines.append(f"  {'NAME':<{width}}  the generator (required), one of:")
    lines += [f"  {'  ' + name:<{width}}  {g.description}" for name, g in GENERATORS.items()]
    lines.append(f"  {'OUT':<{width}}  the folder to write (required; created if missing)")
    lines.append(f"\n`{PROG} NAME --help` lists the generator's keys (key=value, --key value or --key=value) with defaults.")
    return "\n".join(lines)


def entrypoint(argv: list[str] | None = None) -> None:
    """Console script: ``NAME OUT`` then ``key=value`` settings of the generator's config."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        fail(PROG, f"missing NAME OUT: {PROG} NAME OUT [key=value ...] (generators: {', '.join(GENERATORS)}; see {PROG} --help)")
    if args[0] in ("-h", "--help"):
        print(_usage())
        raise SystemExit(0)
    name, rest = args[0], args[1:]
    if name not in GENERATORS:
        fail(PROG, f"unknown generator '{name}' (generators: {', '.join(GENERATORS)}; see {PROG} --help)")
    assignments, positionals, wants_help = split_arguments(rest, PROG, max_positionals=1)
    description = f"{GENERATORS[name].description}\n\nWrites into OUT, the folder given after NAME (required; created if missing)."
    config_type, write = GENERATORS[name].load()
    config = parse_config(config_type(), assignments, f"{PROG} {name} OUT", description, wants_help)
    if not positionals:
        fail(PROG, f"missing the output folder: {PROG} {name} OUT [key=value ...]")
    out = Path(positionals[0])
    if out.exists() and not out.is_dir():
        fail(PROG, f"OUT={out} is a file; give a folder (it is created if missing)")
    try:
        written = write(out, config)
    except ValueError as err:
        fail(PROG, str(err))
    except OSError as err:  # e.g. no permission to write there
        fail(PROG, str(err) if not err.filename else f"{err.filename}: {err.strerror or err}")
    print(f"sparse3d: wrote {out}")
    if isinstance(written, list):
        for path in written:
            print(f"  {path}")


if __name__ == "__main__":
    entrypoint()
