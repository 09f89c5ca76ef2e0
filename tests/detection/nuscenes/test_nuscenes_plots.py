"""The devkit's evaluation plots written by sparse3d-eval's nuScenes branch."""

import sys

import pytest

from sparse3d.cli.eval import NuScenesEval, main
from sparse3d.detection.nuscenes.eval.config import DetectionConfig

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _command(db, tmp_path) -> NuScenesEval:
    results = db.write_submission(tmp_path / "results.json", "synth_val", seed=3)
    return NuScenesEval(results=results, dataroot=db.root, version=db.version, split="synth_val",
                        out=tmp_path / "eval", cache=None)


def test_eval_writes_a_pr_and_a_tp_plot_per_class(synth_databases, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    command = _command(synth_databases[0], tmp_path)
    main(command)
    plots = command.out / "plots"
    config = DetectionConfig()
    expected = {f"{name}_{kind}_curve.png" for name in config.class_names for kind in ("pr", "tp")}
    expected |= {f"dist_pr_curve_{th}.png" for th in config.dist_ths}
    assert {p.name for p in plots.iterdir()} == expected  # no temporary files left behind
    for name in expected:
        data = (plots / name).read_bytes()
        assert len(data) > len(PNG_SIGNATURE) and data.startswith(PNG_SIGNATURE), name
    assert f"wrote {len(expected)} plots" in capsys.readouterr().out


def test_without_matplotlib_one_line_says_plots_were_skipped(synth_databases, tmp_path, monkeypatch, capsys):
    command = _command(synth_databases[0], tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    main(command)
    lines = [line for line in capsys.readouterr().out.splitlines() if "plots" in line]
    assert len(lines) == 1 and "skipped" in lines[0] and "matplotlib" in lines[0]
    assert (command.out / "metrics_summary.json").exists() and not (command.out / "plots").exists()
