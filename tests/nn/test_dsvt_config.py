"""DSVT configs from YAML: the packaged presets hold the published values, and malformed
files are reported by file and field."""

import pytest

from sparse3d.nn.dsvt import DSVTConfig, DSVTStageConfig, dsvt_preset, dsvt_presets

# The values of the presets as they were written in Python before they moved to YAML.
PUBLISHED = {
    "dsvt_p_nuscenes": DSVTConfig(
        pc_range=(-54.0, -54.0, -5.0, 54.0, 54.0, 3.0),
        voxel_size=(0.3, 0.3, 8.0),
        point_channels=5,
        vfe_filters=(128, 128),
        channels=128,
        num_heads=8,
        ffn_channels=256,
        stages=(DSVTStageConfig(window=(30, 30, 1), shifts=((0, 0, 0), (15, 15, 0)), set_size=90, num_blocks=4),),
    ),
    "dsvt_v_waymo": DSVTConfig(
        pc_range=(-74.88, -74.88, -2.0, 74.88, 74.88, 4.0),
        voxel_size=(0.32, 0.32, 0.1875),
        point_channels=5,
        vfe_filters=(192, 192),
        channels=192,
        num_heads=8,
        ffn_channels=384,
        stages=tuple(
            DSVTStageConfig(window=(12, 12, wz), shifts=((0, 0, 0), (6, 6, 0)), set_size=48, num_blocks=1, downsample=pool)
            for wz, pool in zip((32, 8, 2, 1), ((1, 1, 4), (1, 1, 4), (1, 1, 2), None))
        ),
        hybrid_factor=(2, 2, 1),
    ),
}

VALID = """\
pc_range: [0, 0, 0, 12, 10, 4]
voxel_size: [1, 1, 1]
point_channels: 4
vfe_filters: [16]
channels: 16
num_heads: 2
ffn_channels: 32
stages:
  - {window: [4, 4, 4], shifts: [[0, 0, 0], [2, 2, 0]], set_size: 6, num_blocks: 2, downsample: [1, 1, 2]}
  - {window: [4, 4, 2], shifts: [[0, 0, 0], [2, 2, 0]], set_size: 5, num_blocks: 2}
pool_heads: 2
"""


def test_presets_are_the_published_values():
    assert dsvt_presets() == sorted(PUBLISHED)
    for name, want in PUBLISHED.items():
        got = dsvt_preset(name)
        assert got == want, name
        # == also holds for the int 54 against 54.0; repr tells them apart.
        assert repr(got) == repr(want), name
    assert dsvt_preset("dsvt_p_nuscenes").grid_shape == (360, 360, 1)
    assert dsvt_preset("dsvt_v_waymo").grid_shape == (468, 468, 32)


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ValueError, match="unknown DSVT preset 'dsvt_x'; available: dsvt_p_nuscenes, dsvt_v_waymo"):
        dsvt_preset("dsvt_x")


def test_from_yaml_reads_ints_as_floats_and_fills_defaults(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(VALID)
    config = DSVTConfig.from_yaml(path)
    assert config.pc_range == (0.0, 0.0, 0.0, 12.0, 10.0, 4.0) and isinstance(config.pc_range[3], float)
    assert config.stages[1].downsample is None and config.hybrid_factor == (1, 1, 1)
    assert config.grid_shape == (12, 10, 4)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("set_size: 5", "set_size: five", "field 'stages[1].set_size': expected int, got 'five'"),
        ("window: [4, 4, 2]", "window: [4, 4]", "field 'stages[1].window': expected 3 entries, got 2: [4, 4]"),
        ("[[0, 0, 0], [2, 2, 0]], set_size: 6", "[[0, 0, 0], [2, 2, true]], set_size: 6",
         "field 'stages[0].shifts[1][2]': expected int, got True"),
        ("voxel_size: [1, 1, 1]", "voxel_size: 1", "field 'voxel_size': expected a list, got 1"),
        ("num_blocks: 2}\n", "num_blocks: 2, stride: 1}\n", "unknown field 'stages[1].stride'; DSVTStageConfig has window, "),
        ("channels: 16\n", "", "missing field 'channels'"),
        ("channels: 16", "channels: 24", "DSVTConfig: vfe_filters[-1] (16) must equal channels (24)"),
        ("  - {window: [4, 4, 2]", "  - [4, 4, 2]\n  - {window: [4, 4, 2]", "field 'stages[1]': expected a mapping of DSVTStageConfig"),
    ],
    ids=["type", "length", "bool", "scalar", "unknown", "missing", "inconsistent", "not-a-mapping"],
)
def test_from_yaml_errors_name_the_file_and_the_field(tmp_path, old, new, message):
    assert old in VALID
    path = tmp_path / "bad.yaml"
    path.write_text(VALID.replace(old, new, 1))
    with pytest.raises(ValueError) as err:
        DSVTConfig.from_yaml(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_from_yaml_rejects_malformed_yaml_and_non_mappings(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("stages: [")
    with pytest.raises(ValueError, match="bad.yaml: not valid YAML"):
        DSVTConfig.from_yaml(path)
    path.write_text("- 1\n")
    with pytest.raises(ValueError, match="bad.yaml: expected a mapping of DSVTConfig fields, got \\[1\\]"):
        DSVTConfig.from_yaml(path)
