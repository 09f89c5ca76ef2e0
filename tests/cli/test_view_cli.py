"""sparse3d-view finds the viewer through the sparse3d.viewer entry point, and says in one
line what to install when it cannot load it."""

import sys

import pytest

from sparse3d.cli import view


def test_viewer_is_found_through_its_entry_point():
    viewer_app = pytest.importorskip("sparse3d.viewer.app")
    assert view.load_viewer() is viewer_app.serve


def test_missing_viser_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "viser", None)  # `import viser` now raises ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "sparse3d.viewer.app", raising=False)  # re-import the app
    with pytest.raises(SystemExit) as exit_info:
        view.entrypoint([f"run={tmp_path}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == "sparse3d-view: error: the viewer needs viser, which is not installed: pip install 'sparse3d[viewer]'\n"


def test_no_viewer_entry_point_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(view.metadata, "entry_points", lambda **selection: ())
    with pytest.raises(SystemExit):
        view.entrypoint([f"run={tmp_path}"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no entry point 'app' in group sparse3d.viewer" in err


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_bad_run_is_a_one_line_error_before_any_server(monkeypatch, capsys, tmp_path, kind):
    run = tmp_path / "run"
    if kind == "file":
        run.write_text("")
    monkeypatch.setattr(view, "load_viewer", lambda: pytest.fail("the viewer must not start"))
    with pytest.raises(SystemExit) as exit_info:
        view.entrypoint([f"run={run}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sparse3d-view: error: ")
    assert ("does not exist" if kind == "missing" else "is a file") in err


ONE_SOURCE = "give one source, run=RUN_DIR, ply=FILE, data=FOLDER or nuscenes=DATAROOT"


@pytest.mark.parametrize("args, message", [
    (["port=0"], f"missing run=PATH: {ONE_SOURCE}"),
    (["run=.", "ply=x.ply"], f"both run= and ply=: {ONE_SOURCE}"),
    (["run=.", "nuscenes=."], f"both run= and nuscenes=: {ONE_SOURCE}"),
    (["run=.", "results=r.json"], "results= and split= go with nuscenes=DATAROOT"),
    (["ply=x.ply", "views=4"], "views= goes with data=FOLDER"),
    (["data=nowhere"], "data=nowhere: no such folder"),
    (["ply=x.ply", "compare=."], "compare= goes with run=RUN_DIR"),
    (["nuscenes=.", "version=v1.0-nothere"], "nuscenes=.: no table folder v1.0-nothere/ in it "
                                             "(version=v1.0-nothere; make one with sparse3d-data nuscenes-synth)"),
])
def test_one_source_is_required_and_help_says_which(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        view.entrypoint(args)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"sparse3d-view: error: {message}\n"
    with pytest.raises(SystemExit) as exit_info:
        view.entrypoint(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--run {None}|PATH" in out and "--ply {None}|PATH" in out and "3DGS PLY" in out
    assert "--nuscenes {None}|PATH" in out and "--results {None}|PATH" in out and "--data {None}|PATH" in out
