"""Old import paths of modules that moved in the 0.2 reorganisation, kept for one release.

Importing an old path returns the module at its new home and warns with a
``DeprecationWarning`` that names the new path. The aliases are resolved by name (a
meta-path finder), so no layer imports another to keep them.
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

MOVED: dict[str, str] = {
    "sparse3d.core.io": "sparse3d.io.atomic",
    "sparse3d.render.cameras": "sparse3d.geometry.cameras",
    "sparse3d.nn.dsvt.layer_norm": "sparse3d.nn.layer_norm",
    "sparse3d.nn.dsvt.gather": "sparse3d.nn.gather",
    "sparse3d.nn.dsvt.encoders": "sparse3d.nn.vfe",
    "sparse3d.nn.dsvt.configs": "sparse3d.nn.dsvt.config",
}
"""Old module path -> new module path."""


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        return importlib.machinery.ModuleSpec(name, self) if name in MOVED else None

    def create_module(self, spec):
        warnings.warn(
            f"{spec.name} moved to {MOVED[spec.name]}; the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        pass  # the new module is already executed


def install() -> None:
    """Makes the old paths importable (idempotent)."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
