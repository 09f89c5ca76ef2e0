"""Declared value ranges of config fields: one check for YAML files, the command line and
configs built in code, with messages that name the source, the key and the range."""

from dataclasses import dataclass, field

import pytest

from sparse3d.cli.overrides import parse_config
from sparse3d.data.nuscenes.errors import NuScenesFormatError
from sparse3d.engine.config import (
    ConfigError,
    MethodConfig,
    Range,
    TrainerConfig,
    at_least,
    between,
    check_ranges,
    positive,
    update_config,
)
from sparse3d.methods.splat import SplatConfig
from sparse3d.synthetic.nuscenes import NuScenesSynthConfig
from sparse3d.synthetic.objects.generator import SyntheticObjectsConfig


@dataclass
class Bounded:
    count: int = field(default=1, metadata=at_least(1))
    rate: float = field(default=0.5, metadata=positive())
    prob: float = field(default=0.5, metadata=between(0, 1))
    sizes: tuple[int, ...] = field(default=(1, 2), metadata=at_least(0))
    limit: int | None = field(default=None, metadata=at_least(1))

    def __post_init__(self):
        check_ranges(self)


@dataclass
class Example(MethodConfig):
    bounded: Bounded = field(default_factory=Bounded)


@pytest.mark.parametrize("source", ["runs/x/config.yaml", "command line"])
@pytest.mark.parametrize(
    "values, message",
    [
        ({"trainer": {"max_steps": -5}}, r"'trainer.max_steps': expected a value >= 1, got -5"),
        ({"trainer": {"max_steps": 0}}, r"'trainer.max_steps': expected a value >= 1, got 0"),
        ({"trainer": {"log_every": 0}}, r"'trainer.log_every': expected a value >= 1, got 0"),
        ({"trainer": {"eval_every": -1}}, r"'trainer.eval_every': expected a value >= 0, got -1"),
        ({"trainer": {"seed": -3}}, r"'trainer.seed': expected a value >= 0, got -3"),
        ({"bounded": {"rate": 0}}, r"'bounded.rate': expected a value > 0, got 0.0"),
        ({"bounded": {"prob": 1.5}}, r"'bounded.prob': expected a value in \[0, 1\], got 1.5"),
        ({"bounded": {"sizes": [3, -1]}}, r"'bounded.sizes': expected a value >= 0, got \(3, -1\)"),
        ({"bounded": {"limit": 0}}, r"'bounded.limit': expected a value >= 1, got 0"),
    ],
)
def test_out_of_range_values_name_source_key_and_range(values, message, source):
    with pytest.raises(ConfigError, match=rf"^{source}: {message}$"):
        update_config(Example(), values, source)


def test_values_on_the_bounds_and_none_are_accepted():
    values = {
        "trainer": {"max_steps": 1, "eval_every": 0, "ckpt_every": 0, "keep_ckpts": 0, "log_every": 1, "seed": 0},
        "bounded": {"count": 1, "rate": 1e-9, "prob": 1, "sizes": [0], "limit": None},
    }
    config = update_config(Example(), values, "test.yaml")
    assert config.trainer.max_steps == 1 and config.bounded.prob == 1.0 and config.bounded.limit is None


def test_configs_built_in_code_are_held_to_the_same_ranges():
    with pytest.raises(ValueError, match=r"TrainerConfig.max_steps: expected a value >= 1, got -5"):
        TrainerConfig(max_steps=-5)
    with pytest.raises(ValueError, match=r"Bounded.prob: expected a value in \[0, 1\], got -0.1"):
        Bounded(prob=-0.1)


def test_range_text():
    assert str(Range(low=1)) == ">= 1" and str(Range(low=0, low_open=True)) == "> 0"
    assert str(Range(high=9)) == "<= 9"
    assert str(Range(0, 1)) == "in [0, 1]" and str(Range(0, 180, True, True)) == "in (0, 180)"
    assert 0.5 in Range(0, 1) and 0 not in Range(0, 1, low_open=True) and 9 in Range(high=9)


def test_command_line_rejects_negative_max_steps(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(SplatConfig(), {"trainer.max_steps": "-5"}, "sparse3d-train", "splat", wants_help=False)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "sparse3d-train: error: command line: 'trainer.max_steps': expected a value >= 1, got -5" in err


@pytest.mark.parametrize(
    "values, message",
    [
        ({"model": {"means_lr": 0}}, r"'model.means_lr': expected a value > 0"),
        ({"model": {"init_opacity": 1}}, r"'model.init_opacity': expected a value in \(0, 1\)"),
        ({"model": {"ssim_lambda": 1.2}}, r"'model.ssim_lambda': expected a value in \[0, 1\]"),
        ({"model": {"sh_degree": 4}}, r"'model.sh_degree': expected a value in \[0, 3\]"),
        ({"model": {"num_random": 0}}, r"'model.num_random': expected a value >= 1"),
        ({"model": {"sh_degree_interval": 0}}, r"'model.sh_degree_interval': expected a value >= 1"),
        ({"datamanager": {"num_train_views": 0}}, r"'datamanager.num_train_views': expected a value >= 1"),
    ],
)
def test_splat_ranges(values, message):
    with pytest.raises(ConfigError, match=rf"^configs/splat.yaml: {message}"):
        update_config(SplatConfig(), values, "configs/splat.yaml")


@pytest.mark.parametrize(
    "config, values, message",
    [
        (SyntheticObjectsConfig(), {"resolution": 4}, r"'resolution': expected a value >= 8, got 4"),
        (SyntheticObjectsConfig(), {"num_test_views": 0}, r"'num_test_views': expected a value >= 1, got 0"),
        (SyntheticObjectsConfig(), {"fov_deg": 180}, r"'fov_deg': expected a value in \(0, 180\), got 180.0"),
        (SyntheticObjectsConfig(), {"camera_distance": -1}, r"'camera_distance': expected a value > 0"),
        (SyntheticObjectsConfig(), {"supersampling": 0}, r"'supersampling': expected a value >= 1, got 0"),
        (NuScenesSynthConfig(), {"val_fraction": 1.5}, r"'val_fraction': expected a value in \[0, 1\], got 1.5"),
        (NuScenesSynthConfig(), {"seed": -1}, r"'seed': expected a value >= 0, got -1"),
        (NuScenesSynthConfig(), {"sweeps_per_sample": 10}, r"'sweeps_per_sample': expected a value in \[0, 9\]"),
    ],
)
def test_synthetic_generator_ranges(config, values, message):
    with pytest.raises(ConfigError, match=rf"^command line: {message}"):
        update_config(config, values, "command line")


def test_generator_checks_keep_their_own_messages():
    # A combination no single range covers: the config's own check, prefixed with the source.
    with pytest.raises(ConfigError, match=r"^gen.yaml: NuScenesSynthConfig: scene_names has 1 names for 2 scenes"):
        update_config(NuScenesSynthConfig(), {"num_scenes": 2, "scene_names": ["scene-0001"]}, "gen.yaml")
    with pytest.raises(ConfigError, match=r"^gen.yaml: SyntheticObjectsConfig.supersampling must be an odd integer"):
        update_config(SyntheticObjectsConfig(), {"supersampling": 2}, "gen.yaml")
    with pytest.raises(NuScenesFormatError, match="objects_per_scene must be >= 10"):
        NuScenesSynthConfig(objects_per_scene=3)
    with pytest.raises(ValueError, match=r"NuScenesSynthConfig.val_fraction: expected a value in \[0, 1\]"):
        NuScenesSynthConfig(val_fraction=-0.5)
    with pytest.raises(ValueError, match=r"SyntheticObjectsConfig.fov_deg: expected a value in \(0, 180\)"):
        SyntheticObjectsConfig(fov_deg=0.0)
