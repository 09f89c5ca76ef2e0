"""sparse3d-eval run=RUN also plots the training curves of metrics.json into RUN/curves.png."""

import json
import os
from pathlib import Path

import pytest
from clirun import run_cli

from sparse3d.cli.eval import write_run_curves
from sparse3d.synthetic.objects.generator import (
    SyntheticObjectsConfig,
    write_synthetic_objects,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A 4-step splat run on a tiny sphere, logging and evaluating every other step."""
    data = write_synthetic_objects(
        tmp_path_factory.mktemp("objects"), SyntheticObjectsConfig(objects=("sphere",), resolution=32, num_test_views=3)
    )[0]
    out = tmp_path_factory.mktemp("runs") / "run"
    trained = run_cli("sparse3d-train", "method=splat", f"data={data}", f"output={out}", "trainer.max_steps=4",
                      "trainer.log_every=1", "trainer.eval_every=2", "trainer.progress=false",
                      "model.num_random=300", env=dict(os.environ))
    assert trained.returncode == 0, trained.stderr
    return out


def test_eval_writes_curves_png(tiny_run):
    pytest.importorskip("matplotlib")
    evaluated = run_cli("sparse3d-eval", f"run={tiny_run}", env=dict(os.environ))
    assert evaluated.returncode == 0, evaluated.stderr
    png = tiny_run / "curves.png"
    assert f"wrote {png}" in evaluated.stdout
    data = png.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_SIGNATURE)
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert [e["step"] for e in metrics["train"]] == [1, 2, 3, 4]
    assert all(e["time"]["steps_per_s"] > 0 for e in metrics["train"] + metrics["eval"])


def test_without_matplotlib_one_line_says_why(tiny_run, tmp_path, monkeypatch, capsys):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else find_spec(name, *a))
    write_run_curves(tiny_run)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "skipped curves.png" in lines[0] and "matplotlib" in lines[0]


def test_without_metrics_json_one_line_says_why(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    write_run_curves(tmp_path)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "skipped curves.png" in lines[0] and "metrics.json" in lines[0]
