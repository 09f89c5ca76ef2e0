"""Loads the native extension sparse3d._C, or reports why it is missing.

When the extension cannot be imported, sparse3d warns once and every op runs its
pure-torch reference. SPARSE3D_REQUIRE_NATIVE=1 turns that fallback into an error (CI
sets it, so a broken native build cannot pass unnoticed).
"""

import os
import warnings

import torch  # noqa: F401  (loads libtorch, which sparse3d._C links against)


class NativeExtensionError(ImportError):
    """The native extension is required (SPARSE3D_REQUIRE_NATIVE=1) but cannot be loaded."""


def _load_native() -> bool:
    try:
        from sparse3d import _C  # noqa: F401  (importing registers the torch.ops.sparse3d ops)
    except ImportError as err:
        message = (
            f"sparse3d: the native extension sparse3d._C could not be loaded ({err}). "
            "Rebuild it with `pip install --no-build-isolation -c constraints.txt -e .`; "
        )
        if os.environ.get("SPARSE3D_REQUIRE_NATIVE") == "1":
            raise NativeExtensionError(message + "SPARSE3D_REQUIRE_NATIVE=1 forbids the fallback.") from err
        warnings.warn(message + "falling back to the pure-torch reference ops (slow).", RuntimeWarning, stacklevel=3)
        return False
    return True


HAS_NATIVE: bool = _load_native()
"""True when the torch.ops.sparse3d ops come from the compiled extension."""
