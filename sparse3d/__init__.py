"""sparse3d: a PyTorch engine for sparse 3D vision and neural rendering."""

from sparse3d import _env

_env.set_openmp_spin()  # before anything below loads torch

from sparse3d import _moved  # noqa: E402
from sparse3d._native import HAS_NATIVE  # noqa: E402

_moved.install()

__version__ = "0.1.0"
__all__ = ["HAS_NATIVE", "__version__"]
