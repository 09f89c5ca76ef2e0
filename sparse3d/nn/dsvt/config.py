"""DSVT configurations: typed dataclasses, read from YAML.

The published backbones are presets, YAML files in the top-level ``configs/dsvt/`` folder
(package ``sparse3d.configs``) loaded by name with :func:`dsvt_preset`, so that this layer
holds no data set's values.
"""

import dataclasses
import types
import typing
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from os import PathLike
from typing import Any

from sparse3d.core.coords import Triple
from sparse3d.core.voxelize import voxel_grid_shape
from sparse3d.io.read import read_yaml


@dataclass
class DSVTStageConfig:
    """One stage: blocks sharing one window / set partition."""

    window: Triple
    """Window size (x, y, z) in cells for shift 0 (shift 1 uses window * hybrid_factor)."""
    shifts: tuple[Triple, Triple]
    """Window shift (x, y, z) in cells for shift 0 and shift 1; z is forced to 0 when the
    window spans the whole z range."""
    set_size: int
    """Slots per set S."""
    num_blocks: int
    """DSVT blocks (two attention layers each); block b uses shift b % 2."""
    downsample: Triple | None = None
    """Attention-pooling stride (x, y, z) applied after this stage; None for the last stage."""


@dataclass
class DSVTConfig:
    """A DSVT backbone from points to BEV: dynamic VFE, DSVT stages, BEV scatter."""

    pc_range: tuple[float, float, float, float, float, float]
    """Point-cloud range [x0, y0, z0, x1, y1, z1], metres (LiDAR frame)."""
    voxel_size: tuple[float, float, float]
    """Voxel size (x, y, z), metres; a pillar's z size spans the range."""
    point_channels: int
    """Columns per input point (x, y, z first)."""
    vfe_filters: tuple[int, ...]
    """PFN widths of the dynamic VFE; the last must equal ``channels``."""
    channels: int
    """Attention width C."""
    num_heads: int
    """Attention heads."""
    ffn_channels: int
    """Hidden width of each FFN."""
    stages: tuple[DSVTStageConfig, ...]
    """The stages, with attention pooling between consecutive ones."""
    hybrid_factor: Triple = (1, 1, 1)
    """Shift-1 windows are ``window * hybrid_factor`` (DSVT-V: 2 x 2 in x, y)."""
    pool_heads: int = 8
    """Heads of the attention pooling."""

    @property
    def grid_shape(self) -> Triple:
        """Voxel grid (X, Y, Z) derived from ``pc_range`` and ``voxel_size``."""
        return voxel_grid_shape(self.pc_range, self.voxel_size)

    @classmethod
    def from_yaml(cls, path: str | PathLike) -> "DSVTConfig":
        """Reads a config from a YAML mapping of its fields (``stages`` a list of mappings of
        DSVTStageConfig fields; fields with a default may be left out).

        Raises:
            ValueError: for malformed YAML, an unknown or missing field, a value of the wrong
                type or length, or an inconsistent config; the message names the file and
                the field (e.g. ``stages[0].window``).
        """
        values = read_yaml(path)
        return _parse(values, cls, str(path), field="")

    def __post_init__(self):
        if self.vfe_filters[-1] != self.channels:
            raise ValueError(f"DSVTConfig: vfe_filters[-1] ({self.vfe_filters[-1]}) must equal channels ({self.channels})")
        if self.channels % self.num_heads or self.channels % self.pool_heads:
            raise ValueError(
                f"DSVTConfig: channels {self.channels} must be divisible by num_heads {self.num_heads} "
                f"and pool_heads {self.pool_heads}"
            )
        for i, stage in enumerate(self.stages):
            if (stage.downsample is None) != (i == len(self.stages) - 1):
                raise ValueError(f"DSVTConfig: stage {i} must {'not ' if i == len(self.stages) - 1 else ''}set downsample")


def dsvt_presets() -> list[str]:
    """Names of the packaged presets, sorted."""
    return sorted(f.name.removesuffix(".yaml") for f in _presets_folder().iterdir() if f.name.endswith(".yaml"))


def dsvt_preset(name: str) -> DSVTConfig:
    """The packaged preset ``name``: ``configs/dsvt/<name>.yaml`` read by
    :meth:`DSVTConfig.from_yaml`.

    Raises:
        ValueError: for an unknown name (the message lists the available ones).

    Examples:
        >>> dsvt_preset("dsvt_p_nuscenes").grid_shape
        (360, 360, 1)
    """
    names = dsvt_presets()
    if name not in names:
        raise ValueError(f"unknown DSVT preset {name!r}; available: {', '.join(names)}")
    # as_file: a real path even when the package is imported from a zip.
    with resources.as_file(_presets_folder() / f"{name}.yaml") as path:
        return DSVTConfig.from_yaml(path)


def _presets_folder() -> Traversable:
    """configs/dsvt/, shipped inside the package sparse3d.configs."""
    return resources.files("sparse3d.configs") / "dsvt"


def _parse(value: Any, hint: Any, source: str, field: str) -> Any:
    """``value`` read from YAML as the annotated type ``hint`` (a config dataclass, ``X |
    None``, a fixed-length or ``...`` tuple, int or float). ``source`` is the file and
    ``field`` the dotted path to ``value`` in it ("" at the top), both named by the
    ValueError raised for anything else."""
    where = f"{source}: field '{field}'" if field else source
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # only ``X | None`` occurs in the configs
        if value is None:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        return _parse(value, hint, source, field)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping of {hint.__name__} fields, got {value!r}")
        fields = {f.name: f for f in dataclasses.fields(hint)}
        prefix = f"{field}." if field else ""
        unknown = [k for k in value if k not in fields]
        if unknown:
            raise ValueError(f"{source}: unknown field '{prefix}{unknown[0]}'; {hint.__name__} has {', '.join(fields)}")
        missing = [k for k, f in fields.items() if k not in value and _required(f)]
        if missing:
            raise ValueError(f"{source}: missing field '{prefix}{missing[0]}'")
        hints = typing.get_type_hints(hint)
        kwargs = {k: _parse(v, hints[k], source, prefix + k) for k, v in value.items()}
        try:
            return hint(**kwargs)
        except ValueError as err:  # __post_init__'s checks across fields
            raise ValueError(f"{where}: {err}") from None
    if origin is tuple:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        items = args[:1] * len(value) if args[1:] == (Ellipsis,) else args
        if len(items) != len(value):
            raise ValueError(f"{where}: expected {len(items)} entries, got {len(value)}: {value!r}")
        return tuple(_parse(v, t, source, f"{field}[{i}]") for i, (v, t) in enumerate(zip(value, items)))
    # bool is an int subclass in Python, but `true` is never a valid width or size.
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"{where}: expected {hint.__name__}, got {value!r}")


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
