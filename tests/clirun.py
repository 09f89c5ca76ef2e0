"""Runs sparse3d's console scripts in a subprocess, as a user would."""

import json
import os
import subprocess
import sys
from pathlib import Path

from sparse3d.engine.logging import without_timing

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


def metrics_without_timing(run_dir: Path) -> dict:
    """A run's metrics.json without each entry's wall-clock "time" (the only part that
    differs between two runs of one config)."""
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    return {group: [without_timing(entry) for entry in entries] for group, entries in metrics.items()}
