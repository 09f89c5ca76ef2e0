"""Runs sparse3d's console scripts in a subprocess, as a user would."""

import os
import subprocess
import sys
from pathlib import Path

PLUGINS = Path(__file__).parent / "plugins"
VENV_BIN = Path(sys.executable).parent


def plugin_environment() -> dict[str, str]:
    """Environment for a subprocess that sees the test-only `fitcheck` method plugin."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PLUGINS), env.get("PYTHONPATH", "")) if p)
    env["OMP_NUM_THREADS"] = "1"  # several processes share 2 cores in these tests
    return env


def run_cli(script: str, *args: str, env: dict[str, str], timeout: float = 300, cwd: Path | None = None):
    """Runs a sparse3d console script; returns the CompletedProcess (text output)."""
    return subprocess.run(
        [str(VENV_BIN / script), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd
    )
