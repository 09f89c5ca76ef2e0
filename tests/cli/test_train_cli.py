"""sparse3d-train's key=value front: help, and helpful errors with a non-zero exit."""

from clirun import run_cli


def test_help_lists_methods(plugin_env):
    result = run_cli("sparse3d-train", "--help", env=plugin_env)
    assert result.returncode == 0
    assert "methods:" in result.stdout and "fitcheck" in result.stdout


def test_method_help_lists_keys_with_defaults(plugin_env):
    result = run_cli("sparse3d-train", "method=fitcheck", "--help", env=plugin_env)
    assert result.returncode == 0
    # 200 comes from the plugin's YAML defaults, not the dataclass default (1000)
    assert "trainer.max_steps" in result.stdout and "(default: 200)" in result.stdout
    assert "model.hidden" in result.stdout


def test_unknown_method_lists_methods(plugin_env):
    result = run_cli("sparse3d-train", "method=nope", env=plugin_env)
    assert result.returncode != 0
    assert "unknown method 'nope'" in result.stderr and "fitcheck" in result.stderr


def test_missing_method_is_an_error(plugin_env):
    result = run_cli("sparse3d-train", "trainer.max_steps=3", env=plugin_env)
    assert result.returncode != 0
    assert "method=NAME is required" in result.stderr


def test_unknown_key_suggests_closest(plugin_env):
    result = run_cli("sparse3d-train", "method=fitcheck", "trainer.max_stepz=3", env=plugin_env)
    assert result.returncode != 0
    assert "unknown key 'trainer.max_stepz'" in result.stderr
    assert "did you mean trainer.max_steps" in result.stderr


def test_wrong_type_says_what_was_expected(plugin_env):
    result = run_cli("sparse3d-train", "method=fitcheck", "model.hidden=abc", env=plugin_env)
    assert result.returncode != 0
    assert "--model.hidden INT" in result.stdout + result.stderr


def test_token_without_equals_is_an_error(plugin_env):
    result = run_cli("sparse3d-train", "method=fitcheck", "trainer.max_steps", env=plugin_env)
    assert result.returncode != 0
    assert "expected key=value" in result.stderr


def test_overrides_reach_the_run(plugin_env, tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "sparse3d-train", "method=fitcheck", f"output={out}", "trainer.max_steps=4", "trainer.eval_every=2",
        "trainer.progress=false", "model.hidden=8", env=plugin_env,
    )
    assert result.returncode == 0, result.stderr
    config = (out / "config.yaml").read_text()
    assert "max_steps: 4" in config and "hidden: 8" in config and "progress: false" in config
    assert "sparse3d-view run=" in result.stdout
