"""sparse3d-export mesh / orbit on a tiny trained splat run, run as a user would, and its
bad inputs: exit status 2, one line `sparse3d-export: error: ...`, no traceback."""

import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from clirun import run_cli
from PIL import Image

from sparse3d.cli import export
from sparse3d.engine.distributed import World
from sparse3d.engine.registry import discover_methods
from sparse3d.engine.trainer import Trainer
from sparse3d.methods.splat import Splat

trimesh = pytest.importorskip("trimesh")


@pytest.fixture(scope="module")
def tiny_run(synthetic_folder, tmp_path_factory) -> Path:
    """A 10-step splat run on the small torus (48 x 48 px, 9 training views)."""
    config = discover_methods()["splat"].default_config()
    config.data, config.output = synthetic_folder, tmp_path_factory.mktemp("export") / "run"
    config.trainer.max_steps, config.trainer.eval_every, config.trainer.progress = 10, 0, False
    config.model.num_random = 300
    Trainer(config, "splat", config.output, World()).train()
    return config.output


def test_mesh_writes_a_coloured_ply_that_trimesh_reads(tiny_run):
    result = run_cli("sparse3d-export", "mesh", f"run={tiny_run}", "resolution=48", env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    path = tiny_run / "mesh.ply"
    assert f"wrote {path}" in result.stdout
    mesh = trimesh.load(path, process=False)
    assert len(mesh.faces) > 0 and mesh.visual.vertex_colors.shape == (len(mesh.vertices), 4)


def test_orbit_writes_a_grid_of_the_frames_and_a_video(tiny_run, small_config, tmp_path):
    out = tmp_path / "orbit"
    result = run_cli("sparse3d-export", "orbit", f"run={tiny_run}", "frames=5", f"out={out}", env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    size = small_config.resolution
    with Image.open(out / "orbit.png") as strip:
        assert strip.size == (3 * size, 2 * size)  # ceil(sqrt(5)) = 3 columns, 2 rows
    skipped = "skipped orbit.mp4: imageio-ffmpeg is not installed" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == (["orbit.png"] if skipped else ["orbit.mp4", "orbit.png"])


@pytest.fixture(scope="module")
def places(tiny_run, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("export_bad")
    (root / "file").write_text("not a folder\n")
    (root / "untrained").mkdir()
    shutil.copy(tiny_run / "config.yaml", root / "untrained" / "config.yaml")
    return {"missing": str(root / "missing"), "file": str(root / "file"), "untrained": str(root / "untrained")}


@pytest.mark.parametrize("args, message", [
    (["mesh", "run={missing}"], "config.yaml: not found"),
    (["orbit", "run={file}"], "is a file, not a run directory"),
    (["mesh", "run={untrained}"], "no checkpoint; train the run first"),
])
def test_bad_run_is_a_one_line_usage_error(places, args, message):
    result = run_cli("sparse3d-export", *(a.format(**places) for a in args), env=dict(os.environ), timeout=120)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert re.match(rf"sparse3d-export: error: .*{message}", result.stderr), result.stderr


@pytest.mark.parametrize("args, message", [
    (["mesh"], "missing run=PATH"),
    ([], "missing WHAT"),
    (["meshes", "run=x"], "unknown export 'meshes'"),
    (["orbit", "run=x", "frames=0"], "'frames': expected a value >= 1"),
    (["mesh", "run=x", "resolution=4"], "'resolution': expected a value in \\[8, 512\\]"),
])
def test_bad_arguments_are_one_line_usage_errors(capsys, args, message):
    assert re.match(rf"sparse3d-export: error: .*{message}", _exit_line(capsys, args))


def _exit_line(capsys, argv: list[str]) -> str:
    """Runs the console script in this process; returns its one error line (exit status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        export.entrypoint(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_a_method_without_depth_is_a_one_line_error(tiny_run, monkeypatch, capsys, tmp_path):
    render = Splat.get_outputs_for_camera
    monkeypatch.setattr(Splat, "get_outputs_for_camera",
                        lambda self, camera: {k: v for k, v in render(self, camera).items() if k != "depth"})
    err = _exit_line(capsys, ["mesh", f"run={tiny_run}", f"out={tmp_path / 'mesh.ply'}"])
    assert err.startswith("sparse3d-export: error: Splat.get_outputs_for_camera returns no 'depth'")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("module", ["open3d", "trimesh"])
def test_a_missing_mesh_extra_names_what_to_install(tiny_run, monkeypatch, capsys, module):
    monkeypatch.setitem(sys.modules, module, None)  # `import MODULE` now raises ImportError
    err = _exit_line(capsys, ["mesh", f"run={tiny_run}"])
    assert err == (f"sparse3d-export: error: {'meshing' if module == 'open3d' else 'writing meshes'} needs "
                   f"{module}, which is not installed (pip install 'sparse3d[mesh]')\n")


@pytest.mark.parametrize("args, shows", [
    (["--help"], ["sparse3d-export mesh run=RUN_DIR", "sparse3d-export orbit run=RUN_DIR", "RUN_DIR/mesh.ply"]),
    (["mesh", "--help"], [r"--run PATH .*\(required\)", r"--resolution INT .*\(default: 128\)", "--alpha_threshold"]),
    (["orbit", "frames=7", "-h"], [r"--run PATH .*\(required\)", r"--frames INT .*\(default: 7\)", "--fps INT"]),
])
def test_help_shows_every_key_and_exits_0(capsys, args, shows):
    with pytest.raises(SystemExit) as exit_info:
        export.entrypoint(args)
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # as one line: tyro wraps long lines
    for pattern in shows:
        assert re.search(pattern, text), (pattern, text)
