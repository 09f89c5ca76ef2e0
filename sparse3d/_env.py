"""The process settings that must precede torch: set when sparse3d is imported before it
(every sparse3d command and tool is), left alone when torch was imported first.

GOMP_SPINCOUNT (torch's OpenMP threads). After every parallel torch op, libgomp keeps each
idle OpenMP thread spinning for GOMP_SPINCOUNT iterations before it sleeps: 300,000 by
default, about 7 ms on a 2-core AMD EPYC. sparse3d's native kernels run on a pool of their
own (cuda/cpu/parallel.h, for its behaviour under load), so on a machine with as many cores
as threads the OpenMP thread that spins after the torch op before a kernel holds the core
that the kernel's pool thread needs, and the kernel runs at one thread's speed. Training
calls a kernel after nearly every torch op. At 10,000 iterations (about 0.25 ms there) the
spin still bridges back-to-back torch ops; on 2 cores the training-like loops of
tools/bench_openmp_spin.py (sparse-conv encoder, strivec's ops, rasterizer, each forward +
backward) ran 1.20-1.27x faster (README, Native extension). A GOMP_SPINCOUNT or
OMP_WAIT_POLICY already in the environment is kept. A script that imports torch before
sparse3d runs with libgomp's default unless it exports the variable itself.
"""

import os
import sys

SPIN_COUNT = "10000"


def set_openmp_spin() -> None:
    """Sets GOMP_SPINCOUNT for torch's OpenMP runtime, unless torch is already loaded or the
    environment holds a spin count or wait policy of its own."""
    if "torch" not in sys.modules and "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
