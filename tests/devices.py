"""The devices the tests run on, and whether this process can run the CUDA ones.

A test that needs CUDA carries the ``cuda`` marker, directly (``@pytest.mark.cuda``) or
through the "cuda" case of :data:`DEVICES`. conftest.py skips those tests where
:func:`cuda_unavailable` gives a reason; under ``SPARSE3D_REQUIRE_CUDA=1`` (``make
test-cuda``) it refuses to start instead, and fails any of them that still skips.
"""

import functools
import re
from pathlib import Path

import pytest
import torch

import sparse3d

CUDA_GLUE = Path(__file__).resolve().parents[1] / "cuda" / "gpu"

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
"""``@pytest.mark.parametrize("device", DEVICES)``: every case on the CPU, and again on CUDA."""


@functools.cache
def cuda_ops() -> tuple[str, ...]:
    """The sparse3d ops that cuda/gpu/*_glue.cpp registers for the CUDA dispatch key."""
    pattern = re.compile(r'm\.impl\("(\w+)"')
    return tuple(sorted(op for glue in CUDA_GLUE.glob("*_glue.cpp") for op in pattern.findall(glue.read_text())))


@functools.cache
def cuda_unavailable() -> str | None:
    """Why this process cannot run the CUDA tests, or None when it can: a CUDA device seen
    by torch, the native extension, and a CUDA kernel for every op of :func:`cuda_ops` (an
    extension built without nvcc or against a CPU torch has none)."""
    if not torch.cuda.is_available():
        build = f"a CPU build of torch {torch.__version__}" if torch.version.cuda is None else f"torch {torch.__version__}"
        return f"torch.cuda.is_available() is False ({build})"
    if not sparse3d.HAS_NATIVE:
        return "the native extension sparse3d._C is not built"
    ops = cuda_ops()
    if not ops:
        return f"no op registrations found in {CUDA_GLUE}/*_glue.cpp"
    missing = [op for op in ops if not torch._C._dispatch_has_kernel_for_dispatch_key(f"sparse3d::{op}", "CUDA")]
    if missing:
        return f"sparse3d._C has no CUDA kernel for {', '.join(missing)} (built without nvcc or against a CPU torch?)"
    return None
