"""Synthetic nuScenes databases shared by the nuScenes tests (generated once per session)."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from sparse3d.data.nuscenes.splits import scenes_of_split
from sparse3d.data.nuscenes.tables import NuScenesTables
from sparse3d.synthetic.lidar import SpinningLidarConfig
from sparse3d.synthetic.nuscenes import NuScenesSynthConfig, write_synthetic_nuscenes
from sparse3d.synthetic.nuscenes_mock import mock_submission

# A coarser sensor than the default keeps generation fast; the geometry is the same.
_TEST_LIDAR = SpinningLidarConfig(azimuth_steps=540)


@dataclass(frozen=True)
class SynthDatabase:
    root: Path
    version: str
    splits: tuple[str, ...]
    config: NuScenesSynthConfig

    def tables(self) -> NuScenesTables:
        return NuScenesTables(self.root, self.version)

    def write_submission(self, path: Path, split: str, seed: int) -> Path:
        db = self.tables()
        tokens = db.samples_of_scenes(scenes_of_split(self.root, self.version, split))
        path.write_text(json.dumps(mock_submission(db, tokens, seed=seed)))
        return path


def _custom(seed: int) -> NuScenesSynthConfig:
    return NuScenesSynthConfig(seed=seed, num_scenes=3, samples_per_scene=4, sweeps_per_sample=1,
                               objects_per_scene=30, lidar=_TEST_LIDAR)


@pytest.fixture(scope="session")
def synth_databases(tmp_path_factory) -> list[SynthDatabase]:
    """Three custom-split databases (seeds 0-2) and one in v1.0-mini form whose official
    mini_val scenes also form its custom synth_val split."""
    out = []
    for seed in (0, 1, 2):
        root = write_synthetic_nuscenes(tmp_path_factory.mktemp(f"nusc{seed}"), _custom(seed))
        out.append(SynthDatabase(root, "v1.0-synth", ("synth_val", "synth_all"), _custom(seed)))
    mini = NuScenesSynthConfig(seed=7, num_scenes=3, samples_per_scene=4, sweeps_per_sample=0, objects_per_scene=30,
                               version="v1.0-mini", scene_names=("scene-0061", "scene-0103", "scene-0916"),
                               lidar=_TEST_LIDAR)
    out.append(SynthDatabase(write_synthetic_nuscenes(tmp_path_factory.mktemp("nuscmini"), mini), "v1.0-mini",
                             ("mini_val", "synth_val"), mini))
    return out
