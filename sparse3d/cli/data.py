"""sparse3d-data NAME OUT [key=value ...]: generate the project's synthetic data sets,
and prepare data sets for training.

    sparse3d-data objects OUT          multi-view object benchmark (the demo's default data)
    sparse3d-data nuscenes-synth OUT   synthetic nuScenes-format database
    sparse3d-data nuscenes-gtdb DATAROOT [version=...] [split=...]
                                       GT database (copy-paste augmentation) of a nuScenes split
"""

import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sparse3d.cli.overrides import fail, parse_config, split_arguments
from sparse3d.engine.config import at_least

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


@dataclass(frozen=True)
class NuScenesGtdbConfig:
    """Settings of ``sparse3d-data nuscenes-gtdb DATAROOT``."""

    version: str = "v1.0-trainval"
    """Table folder under DATAROOT, e.g. ``v1.0-trainval``, ``v1.0-mini`` or ``v1.0-synth``."""
    split: str = "train"
    """The split whose objects are collected (the training split)."""
    num_sweeps: int = field(default=10, metadata=at_least(1))
    """LiDAR sweeps per sample, the keyframe included (as the detector reads them)."""
    out: str | None = None
    """Database folder; default DATAROOT/sparse3d_gtdb_<version>_<split>."""


_GTDB_DESCRIPTION = ("Build the GT database of a nuScenes split (every GT object's points and box, for GT-sampling "
                     "augmentation) and print where it is and the objects per class.")


def _nuscenes_gtdb(rest: list[str]) -> None:
    """``nuscenes-gtdb DATAROOT [key=value ...]``: builds the database, prints its folder
    and per-class counts; one-line errors for a missing dataroot, version or split."""
    from sparse3d.detection.gt_database import GtSamplerConfig, build_gt_database
    from sparse3d.detection.nuscenes.reader import NuScenesReaderConfig

    prog = f"{PROG} nuscenes-gtdb DATAROOT"
    assignments, positionals, wants_help = split_arguments(rest, PROG, max_positionals=1)
    description = f"{_GTDB_DESCRIPTION}\n\nReads DATAROOT, the nuScenes dataroot given after the name (required)."
    config = parse_config(NuScenesGtdbConfig(), assignments, prog, description, wants_help)
    if not positionals:
        fail(PROG, f"missing the dataroot: {PROG} nuscenes-gtdb DATAROOT [version=...] [split=...]")
    dataroot = Path(positionals[0])
    if not dataroot.is_dir():
        fail(PROG, f"DATAROOT={dataroot} is not a folder")
    if not (dataroot / config.version).is_dir():
        found = sorted(p.name for p in dataroot.iterdir() if p.is_dir() and p.name.startswith("v1.0"))
        fail(PROG, f"no table folder {config.version!r} in {dataroot} (found: {', '.join(found) or 'none'}); "
                   f"give version=...")
    reader_config = NuScenesReaderConfig(str(dataroot), config.version, config.split, config.num_sweeps)
    try:
        database = build_gt_database(reader_config, config.out)
    except ValueError as err:  # malformed tables, unknown split, empty split
        fail(PROG, str(err))
    except OSError as err:  # e.g. no permission to write there
        fail(PROG, str(err) if not err.filename else f"{err.filename}: {err.strerror or err}")
    print(f"sparse3d: wrote GT database {database.folder}")
    minimum = GtSamplerConfig().min_points_of  # what the default sampler pastes
    for name, count in database.counts.items():
        eligible = int((database.objects(name).num_points >= minimum.get(name, 0)).sum())
        print(f"  {name}: {count} objects ({eligible} with >= {minimum.get(name, 0)} points)")


VERBS = {"nuscenes-gtdb": (_nuscenes_gtdb, "DATAROOT", _GTDB_DESCRIPTION)}
"""Commands that prepare an existing data set: name -> (runner, positional, description)."""


def _attribute(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _usage() -> str:
    width = max(len(n) for n in GENERATORS)
    lines = [f"usage: {PROG} NAME OUT [key=value ...]", "", "Generate a synthetic data set.", "", "arguments:"]
    lines.append(f"  {'NAME':<{width}}  the generator (required), one of:")
    lines += [f"  {'  ' + name:<{width}}  {g.description}" for name, g in GENERATORS.items()]
    lines.append(f"  {'OUT':<{width}}  the folder to write (required; created if missing)")
    lines.append("\nOther commands:")
    lines += [f"  {PROG} {name} {positional} [key=value ...]\n      {text}" for name, (_, positional, text) in VERBS.items()]
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
    if name in VERBS:
        VERBS[name][0](rest)
        return
    if name not in GENERATORS:
        fail(PROG, f"unknown generator '{name}' (generators: {', '.join(GENERATORS)}; other commands: "
                   f"{', '.join(VERBS)}; see {PROG} --help)")
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
