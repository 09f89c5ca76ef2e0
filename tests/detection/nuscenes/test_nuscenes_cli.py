"""The console scripts over the nuScenes code: generate a database, score a submission."""

import json
import os

from clirun import run_cli


def test_data_then_eval_from_the_command_line(synth_databases, tmp_path):
    db = synth_databases[0]
    results = db.write_submission(tmp_path / "results.json", "synth_val", seed=3)
    out = tmp_path / "eval"
    args = [f"results={results}", f"dataroot={db.root}", f"version={db.version}", "split=synth_val", f"out={out}",
            f"cache={tmp_path / 'cache'}"]
    result = run_cli("sparse3d-eval", *args, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "metrics_summary.json").read_text())
    assert 0.0 < summary["nd_score"] < 1.0 and (out / "metrics_details.json").exists()
    assert "NDS" in result.stdout and "mAP" in result.stdout

    cached = run_cli("sparse3d-eval", *args, env=dict(os.environ))  # second pass reads the GT cache
    assert cached.returncode == 0 and json.loads((out / "metrics_summary.json").read_text())["nd_score"] == summary["nd_score"]


def test_bad_submission_is_a_clear_error(synth_databases, tmp_path):
    db = synth_databases[0]
    results = db.write_submission(tmp_path / "results.json", "synth_val", seed=3)
    submission = json.loads(results.read_text())
    first = next(iter(submission["results"]))
    submission["results"][first][0]["detection_name"] = "spaceship"
    results.write_text(json.dumps(submission))
    result = run_cli("sparse3d-eval", f"results={results}", f"dataroot={db.root}", f"version={db.version}",
                     "split=synth_val", f"out={tmp_path / 'eval'}", "cache=None", env=dict(os.environ))
    assert result.returncode != 0
    assert "spaceship" in result.stderr and "Traceback" not in result.stderr


def test_nuscenes_synth_generator_command(tmp_path):
    out = tmp_path / "nusc"
    result = run_cli("sparse3d-data", "nuscenes-synth", str(out), "num_scenes=1", "samples_per_scene=1",
                     "sweeps_per_sample=0", "objects_per_scene=10", "lidar.azimuth_steps=180", env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert (out / "v1.0-synth" / "sample.json").exists()
    bad = run_cli("sparse3d-data", "nuscenes-synth", str(out), "num_scenes=0", env=dict(os.environ))
    assert bad.returncode != 0 and "num_scenes" in bad.stderr and "Traceback" not in bad.stderr
