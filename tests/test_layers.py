"""The layer order of DESIGN.md, enforced: import-linter runs the contract in
pyproject.toml on the package, and reports a deliberately wrong import.

The package is linted from a copy (sparse3d/ with viewer/ placed at sparse3d/viewer, as the
installed wheel lays it out): the editable install maps ``sparse3d.viewer`` to the
top-level folder, which the linter's module graph would not see.
"""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]


def _package_copy(root: Path) -> Path:
    skip = shutil.ignore_patterns("__pycache__", "*.so")
    shutil.copytree(REPO / "sparse3d", root / "sparse3d", ignore=skip)
    shutil.copytree(REPO / "viewer", root / "sparse3d" / "viewer", ignore=skip)
    return root


def _lint(root: Path) -> subprocess.CompletedProcess:
    # The linter finds the package from its working directory, so it sees the copy.
    return subprocess.run([*LINT, str(REPO / "pyproject.toml")], cwd=root, capture_output=True, text=True)


def test_the_package_keeps_the_layer_order(tmp_path):
    run = _lint(_package_copy(tmp_path))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "1 kept, 0 broken" in run.stdout


def test_an_upward_import_is_reported(tmp_path):
    root = _package_copy(tmp_path)
    (root / "sparse3d" / "core" / "upward.py").write_text("from sparse3d.render.rasterize import rasterize_gaussians\n")
    run = _lint(root)
    assert run.returncode != 0
    assert "sparse3d.core.upward -> sparse3d.render.rasterize" in run.stdout


def test_a_sideways_import_between_siblings_is_reported(tmp_path):
    root = _package_copy(tmp_path)
    (root / "sparse3d" / "nn" / "sideways.py").write_text("import sparse3d.render.metrics\n")
    run = _lint(root)
    assert run.returncode != 0
    assert "sparse3d.nn.sideways -> sparse3d.render.metrics" in run.stdout
