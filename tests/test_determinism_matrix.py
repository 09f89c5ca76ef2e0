"""Thread-count determinism on every vector path: tests/determinism_cases.py runs each
workload at 1, 2 and 3 threads, in a subprocess per instruction-set cap, so that the
promise cannot hold by luck of this machine's CPU (torch, MKL and oneDNN pick their
kernels, and how they split work, from the CPU's features; sparse3d._C follows
ATEN_CPU_CAPABILITY)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sparse3d

CASES = Path(__file__).parent / "determinism_cases.py"
WORKLOADS = ["linear", "sparse_conv", "rasterizer", "set_partition", "dsvt", "activations", "radiance_fields"]
CAPS = {
    "uncapped": {},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "scalar": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}


@pytest.mark.skipif(not sparse3d.HAS_NATIVE, reason="the promise is the native kernels'")
@pytest.mark.parametrize("cap", list(CAPS))
def test_every_workload_is_bitwise_identical_at_1_2_and_3_threads(cap):
    if cap == "avx512" and "AVX512" not in torch.backends.cpu.get_cpu_capability():
        # Forcing a vector width the CPU lacks ends in SIGILL, not in an answer.
        pytest.skip(f"this CPU has no AVX-512 (torch: {torch.backends.cpu.get_cpu_capability()})")
    env = {k: v for k, v in os.environ.items() if k not in CAPS["avx2"]} | CAPS[cap]
    # The radiance fields' training steps (a minute at three thread counts) run once, at
    # the CPU's own vector width; their activations run at every cap.
    names = WORKLOADS if cap == "uncapped" else [name for name in WORKLOADS if name != "radiance_fields"]
    run = subprocess.run([sys.executable, str(CASES), *names], env=env, capture_output=True, text=True, cwd=CASES.parent)
    assert run.returncode == 0, run.stderr[-3000:]
    verdicts = json.loads(run.stdout.strip().splitlines()[-1])
    assert verdicts == {name: "identical" for name in names}, verdicts
