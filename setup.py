"""Builds the native extension sparse3d._C from cuda/.

The CPU kernels are always built; the CUDA kernels are added when torch is a CUDA build and
nvcc is found. A failed build only warns: `import sparse3d` then reports that the extension
is missing and falls back to the pure-torch references (SPARSE3D_REQUIRE_NATIVE=1 makes
both the build failure and the fallback errors, as CI wants).

Install with `pip install --no-build-isolation -c constraints.txt -e .` so that the build
sees the already-installed CPU torch instead of fetching another one.
"""

import glob
import os

from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _sources(pattern: str) -> list[str]:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def native_extension():
    """The sparse3d._C extension: CPU kernels, plus CUDA kernels when they can be built."""
    include_dirs = [os.path.join(ROOT, "cuda", "include")]
    cxx_flags = ["-O3", "-fopenmp"]
    if CUDA_HOME is not None:  # torch sets CUDA_HOME only for a CUDA build of itself
        return CUDAExtension(
            "sparse3d._C",
            _sources("cuda/cpu/*.cpp") + _sources("cuda/gpu/*.cpp") + _sources("cuda/gpu/*.cu"),
            include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--expt-relaxed-constexpr"]},
            extra_link_args=["-fopenmp"],
        )
    return CppExtension(
        "sparse3d._C",
        _sources("cuda/cpu/*.cpp"),
        include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=["-fopenmp"],
    )


class OptionalBuildExtension(BuildExtension):
    """Turns a failed native build into a warning unless SPARSE3D_REQUIRE_NATIVE=1."""

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as err:  # any compiler or toolchain failure
            if os.environ.get("SPARSE3D_REQUIRE_NATIVE") == "1":
                raise
            print(
                f"WARNING: building {ext.name} failed ({err}); sparse3d will run on its "
                "pure-torch reference ops. Set SPARSE3D_REQUIRE_NATIVE=1 to make this fatal."
            )


setup(
    # The top-level configs/ and viewer/ folders ship inside the package as
    # sparse3d.configs (method defaults) and sparse3d.viewer (the web viewer).
    packages=find_packages(include=["sparse3d", "sparse3d.*"]) + ["sparse3d.configs", "sparse3d.configs.dsvt", "sparse3d.viewer"],
    package_dir={"sparse3d.configs": "configs", "sparse3d.viewer": "viewer"},
    # "**" so that preset folders (configs/dsvt/) ship too; "*.yaml" alone stays at the top.
    package_data={"sparse3d.configs": ["**/*.yaml"]},
    ext_modules=[native_extension()],
    cmdclass={"build_ext": OptionalBuildExtension.with_options(use_ninja=True)},
)
