"""sparse3d/_env.py: torch's OpenMP spin count, set when sparse3d loads before torch."""

import os
import subprocess
import sys

import pytest

from sparse3d._env import SPIN_COUNT

PRINT_SPIN = "import os; print(os.environ.get('GOMP_SPINCOUNT'))"


def spin_count_after(imports: str, **env: str) -> str:
    """GOMP_SPINCOUNT in a fresh process after ``imports``, with ``env`` over this one's
    environment (less any OpenMP wait settings of its own)."""
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    run = subprocess.run([sys.executable, "-c", f"{imports}; {PRINT_SPIN}"], env=base | env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout.strip()


def test_importing_sparse3d_first_sets_the_spin_count():
    assert spin_count_after("import sparse3d") == SPIN_COUNT


@pytest.mark.parametrize("env", [{"GOMP_SPINCOUNT": "5"}, {"OMP_WAIT_POLICY": "PASSIVE"}])
def test_a_users_openmp_setting_is_kept(env):
    expected = env.get("GOMP_SPINCOUNT", "None")
    assert spin_count_after("import sparse3d", **env) == expected


def test_after_torch_it_changes_nothing():
    # libgomp read the environment when torch loaded: setting it now would claim a spin
    # count that is not in effect.
    assert spin_count_after("import torch; import sparse3d") == "None"
