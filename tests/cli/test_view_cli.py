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


@pytest.mark.parametrize("args, message", [
    (["port=0"], "missing run=PATH: give one source, run=RUN_DIR or ply=FILE"),
    (["run=.", "ply=x.ply"], "both run= and ply=: give one source, run=RUN_DIR or ply=FILE"),
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
