"""Bad arguments to each of the four commands, run as a user would: exit status 2, one
line `PROG: error: ...` on stderr, and no traceback anywhere."""

import json
import re

import pytest
from clirun import run_cli

from sparse3d.synthetic.lidar import SpinningLidarConfig
from sparse3d.synthetic.nuscenes import NuScenesSynthConfig, write_synthetic_nuscenes

# (command, arguments, what the message says); {file} is an existing file, {missing} a
# path that does not exist, {empty} an empty folder, {db}/{pred} a tiny nuScenes database
# and a valid submission for it.
CASES = [
    ("sparse3d-train", ["method=fitcheck", "trainer.max_stepz=3"], "unknown key 'trainer.max_stepz'"),
    ("sparse3d-train", ["method=fitcheck", "model.hidden=abc"], "expected int"),
    ("sparse3d-train", ["method=fitcheck", "--trainer.max-steps", "-1"], "expected a value >= 1"),
    ("sparse3d-train", ["method=nope"], "unknown method 'nope'"),
    ("sparse3d-train", ["method=fitcheck", "preset=gpu"], r"unknown preset 'gpu' \(this method has: none\)"),
    ("sparse3d-train", ["trainer.max_steps=3"], "method=NAME is required"),
    ("sparse3d-train", ["method=fitcheck", "trainer.max_steps"], "expected key=value"),
    ("sparse3d-train", ["method=fitcheck", "--trainer.max_steps"], "needs a value"),
    ("sparse3d-train", ["method=splat", "data={missing}"], "not found"),
    ("sparse3d-train", ["method=splat", "data={file}"], "not found"),
    ("sparse3d-train", ["method=fitcheck", "output={file}"], "is a file, not a run directory"),
    ("sparse3d-eval", [], "give run=RUN_DIR"),
    ("sparse3d-eval", ["run=a", "results=b"], "one of them"),
    ("sparse3d-eval", ["results={pred}"], "missing dataroot=PATH"),
    ("sparse3d-eval", ["run={missing}"], "not found"),
    ("sparse3d-eval", ["run={file}"], "not found"),
    ("sparse3d-eval", ["run={empty}", "bogus=1"], "unknown key 'bogus'"),
    ("sparse3d-eval", ["results={missing}", "dataroot={db}"], "missing"),
    ("sparse3d-eval", ["results={pred}", "dataroot={missing}", "version=v1.0-synth", "cache=null"], "no folder"),
    ("sparse3d-eval", ["results={pred}", "dataroot={db}", "version=v1.0-synth", "split=synth_all", "out={file}",
                       "cache=null"], "out=.* is a file"),
    ("sparse3d-eval", ["--results", "{pred}", "--dataroot", "{db}", "--version", "v1.0-synth", "--split=synth_all",
                       "--out", "{empty}/out", "--cache", "{file}"], "cache=.* is a file"),
    ("sparse3d-eval", ["results={pred}", "dataroot={db}", "version=v1.0-synth", "split=nope", "cache=null",
                       "out={empty}/out"], "no split 'nope'"),
    ("sparse3d-view", [], "missing run=PATH"),
    ("sparse3d-view", ["ply={missing}"], "no such file"),
    ("sparse3d-view", ["ply={file}"], "not a readable PLY file"),
    ("sparse3d-view", ["run={missing}"], "does not exist"),
    ("sparse3d-view", ["--run", "{file}"], "is a file"),
    ("sparse3d-view", ["run={empty}", "port=-1"], "'port': expected a value in \\[0, 65535\\]"),
    ("sparse3d-view", ["run={empty}", "port=http"], "expected int"),
    ("sparse3d-view", ["run={empty}", "host=no.such.host.invalid"], "cannot listen on host"),
    ("sparse3d-view", ["run={empty}", "hots=x"], "unknown key 'hots'"),
    ("sparse3d-view", ["run={empty}", "--port"], "needs a value"),
    ("sparse3d-data", [], "missing NAME OUT"),
    ("sparse3d-data", ["nope", "{empty}"], "unknown generator 'nope'"),
    ("sparse3d-data", ["objects"], "missing the output folder"),
    ("sparse3d-data", ["objects", "{file}"], "is a file"),
    ("sparse3d-data", ["objects", "{empty}/o", "resolution=-1"], "expected a value >= 8"),
    ("sparse3d-data", ["objects", "{empty}/o", "--num-test-views", "-2"], "expected a value >= 1"),
    ("sparse3d-data", ["objects", "{empty}/o", "objects=[nope]"], "unknown synthetic object 'nope'"),
    ("sparse3d-data", ["objects", "{empty}/o", "extra"], "expected key=value"),
    ("sparse3d-data", ["nuscenes-synth", "{empty}/n", "num_scenes=-1"], "expected a value >= 1"),
    ("sparse3d-data", ["nuscenes-synth", "{empty}/n", "lidar.num_beams=0"], "num_beams"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_arguments")
    (root / "file").write_text("not a folder\n")
    (root / "empty").mkdir()
    config = NuScenesSynthConfig(num_scenes=2, samples_per_scene=1, sweeps_per_sample=0,
                                 lidar=SpinningLidarConfig(num_beams=4, azimuth_steps=64))
    write_synthetic_nuscenes(root / "db", config)
    samples = json.loads((root / "db" / "v1.0-synth" / "sample.json").read_text())
    meta = {"use_camera": False, "use_lidar": True, "use_radar": False, "use_map": False, "use_external": False}
    (root / "pred.json").write_text(json.dumps({"meta": meta, "results": {s["token"]: [] for s in samples}}))
    return {"file": str(root / "file"), "missing": str(root / "missing"), "empty": str(root / "empty"),
            "db": str(root / "db"), "pred": str(root / "pred.json")}


@pytest.mark.parametrize("script, args, message", CASES)
def test_bad_argument_is_a_one_line_usage_error(plugin_env, places, script, args, message):
    result = run_cli(script, *(a.format(**places) for a in args), env=plugin_env, timeout=120)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == 2, output
    assert result.stderr.count("\n") == 1, result.stderr
    assert re.match(rf"{script}: error: .*{message}", result.stderr), result.stderr
