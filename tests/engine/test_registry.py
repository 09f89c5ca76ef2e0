"""Methods are found through the sparse3d.methods entry-point group."""

import re

import pytest

from sparse3d.engine.config import ConfigError
from sparse3d.engine.registry import MethodSpecification, discover_methods


def test_plugin_method_is_discovered_with_yaml_defaults(plugin_path):
    methods = discover_methods()
    assert isinstance(methods["fitcheck"], MethodSpecification)
    config = methods["fitcheck"].default_config()
    assert config.trainer.max_steps == 200  # from fitcheck.yaml, not the dataclass default


@pytest.mark.parametrize("target, reason", [
    ("sparse3d_fitcheck:target_function", "it names a function, expected a MethodSpecification"),
    ("no_such_package.method:spec", "loading it failed with ModuleNotFoundError: No module named 'no_such_package'"),
])
def test_a_broken_entry_point_is_left_out_and_named(plugin_path, tmp_path, monkeypatch, target, reason):
    info = tmp_path / "broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[sparse3d.methods]\nbroken = {target}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(UserWarning, match=f"'broken = {re.escape(target)}'.* left out: {re.escape(reason)}"):
        methods = discover_methods()
    assert "broken" not in methods and {"fitcheck", "splat"} <= methods.keys()  # the others still work


def test_a_preset_applies_over_the_defaults_and_an_unknown_one_is_named():
    spec = discover_methods()["gaussianobject"]
    cpu, gpu = spec.default_config(), spec.default_config("gpu")
    assert (cpu.coarse.steps, cpu.trainer.max_steps) == (3000, 2000)  # configs/gaussianobject.yaml
    # The reference's schedules; what the preset leaves alone keeps the defaults.
    assert (gpu.coarse.steps, gpu.loo.steps, gpu.trainer.max_steps, gpu.refine.around_gt_steps) == (10000, 10000, 4000, 2800)
    assert gpu.coarse.strategy.refine_stop_iter == 6000 and gpu.model.sh_degree == cpu.model.sh_degree == 2
    with pytest.raises(ConfigError, match="unknown preset 'tpu' \\(this method has: gpu\\)"):
        spec.default_config("tpu")
