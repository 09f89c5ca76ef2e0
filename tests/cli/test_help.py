"""`--help` of each command is complete, marks what is required, and exits 0 whatever
else is given."""

import re

import pytest
from clirun import run_cli

CASES = [
    # (command, arguments, what the help must show)
    ("sparse3d-train", ["--help"], ["method=NAME", "fitcheck", r"preset=NAME", r"gaussianobject .* Presets: gpu\."]),
    ("sparse3d-train", ["method=gaussianobject", "preset=gpu", "--help"], [r"--coarse.steps INT .*\(default: 10000\)"]),
    ("sparse3d-train", ["method=fitcheck", "--help"], ["--trainer.max_steps INT", "--model.hidden INT"]),
    ("sparse3d-eval", ["--help"], [r"--run PATH .*\(required\)", r"--results PATH .*\(required\)",
                                   r"--dataroot PATH .*\(required\)", "--split STR", "--cache"]),
    ("sparse3d-eval", ["results=x", "--help"], [r"--dataroot PATH .*\(required\)", r"\(default: x\)", "--out PATH"]),
    ("sparse3d-eval", ["--run", "r", "bogus=1", "-h"], [r"--run PATH .*\(default: r\)"]),
    ("sparse3d-view", ["--help"], [r"usage: sparse3d-view \[-h\] \[OPTIONS\]", r"--run \{None\}\|PATH", "--port INT",
                                   r"--nuscenes \{None\}\|PATH", r"--data \{None\}\|PATH"]),
    ("sparse3d-view", ["port=abc", "--help"], [r"--ply \{None\}\|PATH", r"\(default: 8080\)"]),
    ("sparse3d-data", ["--help"], ["NAME OUT", "objects", "nuscenes-synth", r"OUT .*required"]),
    ("sparse3d-data", ["objects", "--help"], ["OUT", "--resolution INT", "--supersampling INT"]),
]


@pytest.mark.parametrize("script, args, shows", CASES)
def test_help_is_complete_and_exits_0(plugin_env, script, args, shows):
    result = run_cli(script, *args, env=plugin_env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    text = " ".join(result.stdout.split())  # as one line: tyro wraps long lines
    for pattern in shows:
        assert re.search(pattern, text), (pattern, result.stdout)
    assert "(default: .)" not in text  # a required path is not shown with a default
