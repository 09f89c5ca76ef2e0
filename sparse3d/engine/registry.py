"""The method registry: every method, built in or from another package, is announced by
an entry point in the group ``sparse3d.methods`` that names a MethodSpecification."""

import warnings
from dataclasses import dataclass, field
from importlib import metadata
from importlib.resources.abc import Traversable
from pathlib import Path

from sparse3d.engine.config import ConfigError, MethodConfig, load_yaml, update_config

ENTRY_POINT_GROUP = "sparse3d.methods"


@dataclass(frozen=True)
class MethodSpecification:
    """A trainable method: its config type, one line for ``--help``, and its defaults.

    Another package adds a method by declaring, in its pyproject.toml::

        [project.entry-points."sparse3d.methods"]
        mymethod = "my_package.method:spec"

    where ``spec`` is a MethodSpecification.
    """

    config_type: type[MethodConfig]
    """The method's config dataclass; its ``_target`` is the method class."""
    description: str
    """One line shown by ``sparse3d-train --help``."""
    defaults: Path | Traversable | None = None
    """YAML file with the method's default values (configs/<method>.yaml for built-ins)."""
    presets: dict[str, Path | Traversable] = field(default_factory=dict)
    """Named YAML files applied over ``defaults`` by ``preset=NAME`` (e.g. a GPU schedule)."""

    def default_config(self, preset: str | None = None) -> MethodConfig:
        """The config with the method's YAML defaults applied, then those of ``preset``.

        Raises:
            ConfigError: an unknown preset (naming the method's presets), or a bad YAML file.
        """
        config = self.config_type()
        files = [self.defaults] if self.defaults is not None else []
        if preset is not None:
            if preset not in self.presets:
                raise ConfigError(f"unknown preset '{preset}' (this method has: {', '.join(sorted(self.presets)) or 'none'})")
            files.append(self.presets[preset])
        for path in files:
            config = update_config(config, load_yaml(path), source=str(path))
        return config


def discover_methods() -> dict[str, MethodSpecification]:
    """All installed methods by name, sorted.

    An entry point that cannot be loaded (its package fails to import) or does not name a
    MethodSpecification is left out with a warning naming it and why, so that one broken
    plugin does not take every other method down with it.
    """
    methods = {}
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point '{entry.name} = {entry.value}' in group {ENTRY_POINT_GROUP}"
        try:
            spec = entry.load()
        except Exception as error:  # noqa: BLE001 -- a plugin may fail in any way; report it, go on
            warnings.warn(f"{where} left out: loading it failed with {type(error).__name__}: {error}", stacklevel=2)
            continue
        if not isinstance(spec, MethodSpecification):
            warnings.warn(f"{where} left out: it names a {type(spec).__name__}, expected a MethodSpecification",
                          stacklevel=2)
            continue
        methods[entry.name] = spec
    return dict(sorted(methods.items()))
