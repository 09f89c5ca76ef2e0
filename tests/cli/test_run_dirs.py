"""Run directories work from any working directory and after a move or copy; a failed
start leaves nothing that blocks the next run."""

import shutil

import yaml
from clirun import run_cli

SPLAT_TINY = ("method=splat", "trainer.max_steps=2", "trainer.progress=false", "model.num_random=200")


def train_in_project(tmp_path, synthetic_folder, plugin_env):
    """Trains a tiny splat run as a user would: relative data= and output= from a project folder."""
    project = tmp_path / "project"
    shutil.copytree(synthetic_folder, project / "data" / "torus")
    result = run_cli(
        "sparse3d-train", *SPLAT_TINY, "data=data/torus", "output=outputs/torus/splat", env=plugin_env, cwd=project
    )
    assert result.returncode == 0, result.stderr
    return project, project / "outputs" / "torus" / "splat"


def test_copied_run_evaluates_from_anywhere_and_names_missing_data(tmp_path, synthetic_folder, plugin_env):
    project, run = train_in_project(tmp_path, synthetic_folder, plugin_env)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"] == str(project / "data" / "torus")  # stored absolute
    assert saved["origin"] == {"cwd": str(project), "run_dir": str(run)}

    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(run, copy)
    third = tmp_path / "third"
    third.mkdir()
    result = run_cli("sparse3d-eval", f"run={copy}", env=plugin_env, cwd=third)
    assert result.returncode == 0, result.stderr
    assert (copy / "eval.json").exists()

    shutil.rmtree(project / "data")
    result = run_cli("sparse3d-eval", f"run={copy}", env=plugin_env, cwd=third)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sparse3d-eval: error: "), result.stderr
    assert "'data'" in lines[0] and f"tried {project / 'data' / 'torus'}" in lines[0]
    assert "Traceback" not in result.stderr


def test_moved_project_finds_its_data_beside_the_run(tmp_path, synthetic_folder, plugin_env):
    project, _run = train_in_project(tmp_path, synthetic_folder, plugin_env)
    moved = tmp_path / "moved"
    project.rename(moved)  # the stored absolute data path no longer exists
    result = run_cli("sparse3d-eval", f"run={moved / 'outputs' / 'torus' / 'splat'}", env=plugin_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    # the same command, run from the moved project, resumes the moved run (data is the same place)
    result = run_cli(
        "sparse3d-train", *SPLAT_TINY[:1], "trainer.max_steps=3", *SPLAT_TINY[2:], "data=data/torus",
        "output=outputs/torus/splat", env=plugin_env, cwd=moved,
    )
    assert result.returncode == 0, result.stderr
    assert "from step-000002.pt" in result.stdout
    assert yaml.safe_load((moved / "outputs" / "torus" / "splat" / "config.yaml").read_text())["data"] == str(
        moved / "data" / "torus"
    )


def test_legacy_relative_data_path_is_found_above_the_run(tmp_path, synthetic_folder, plugin_env):
    _project, run = train_in_project(tmp_path, synthetic_folder, plugin_env)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["data"] = "data/torus"  # as runs stored it before paths were made absolute
    saved.pop("origin", None)
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    result = run_cli("sparse3d-eval", f"run={run}", env=plugin_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_failed_start_does_not_block_the_next_run(tmp_path, synthetic_folder, plugin_env):
    out = tmp_path / "run"
    failed = run_cli("sparse3d-train", *SPLAT_TINY, f"data={tmp_path / 'nope'}", f"output={out}", env=plugin_env)
    assert failed.returncode == 2
    assert failed.stderr.startswith("sparse3d-train: error: ") and "Traceback" not in failed.stderr
    left_config = (out / "config.yaml").exists()

    result = run_cli(
        "sparse3d-train", *SPLAT_TINY, f"data={synthetic_folder}", f"output={out}", "model.sh_degree=1",
        env=plugin_env,
    )
    assert result.returncode == 0, result.stderr
    assert "sh_degree: 1" in (out / "config.yaml").read_text()
    assert not left_config  # nothing was trained, so nothing was written


def test_missing_data_message_of_train_is_one_line(tmp_path, plugin_env):
    result = run_cli("sparse3d-train", "method=splat", f"output={tmp_path / 'run'}", env=plugin_env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "sparse3d-train: error: splat needs data=PATH (e.g. a folder written by `sparse3d-data objects`)"
    ]
    assert not (tmp_path / "run").exists()
