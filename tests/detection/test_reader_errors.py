"""The sample reader on damaged LiDAR files: a missing, truncated or non-finite file is an
error naming the sample and the file; an empty file is an empty frame; a sweep chain
shorter than ``num_sweeps`` gives what it holds."""

from pathlib import Path

import numpy as np
import pytest

from sparse3d.data.nuscenes.errors import NuScenesFormatError
from sparse3d.detection.nuscenes.reader import NuScenesReader, NuScenesReaderConfig
from sparse3d.synthetic.lidar import SpinningLidarConfig
from sparse3d.synthetic.nuscenes import NuScenesSynthConfig, write_synthetic_nuscenes


@pytest.fixture
def world(tmp_path) -> Path:
    config = NuScenesSynthConfig(seed=1, num_scenes=1, samples_per_scene=3, sweeps_per_sample=2, objects_per_scene=10,
                                 lidar=SpinningLidarConfig(num_beams=4, azimuth_steps=90))
    return write_synthetic_nuscenes(tmp_path / "world", config)


def reader(world: Path, num_sweeps: int = 3) -> NuScenesReader:
    return NuScenesReader(NuScenesReaderConfig(str(world), "v1.0-synth", "synth_all", num_sweeps))


def test_sweep_chain_shorter_than_num_sweeps(world):
    # 2 sweeps before each keyframe: sample k reaches back 3 * k + 2 records at most.
    lags = [len(np.unique(s.points[:, 4])) for s in reader(world, num_sweeps=20)]
    assert lags == [3, 6, 9]
    assert [len(np.unique(s.points[:, 4])) for s in reader(world, num_sweeps=4)] == [3, 4, 4]


def test_empty_file_is_an_empty_frame(world):
    r = reader(world, num_sweeps=1)
    (world / r.infos[0].sweeps[0].path).write_bytes(b"")
    sample = r[0]
    assert sample.points.shape == (0, 5) and sample.points.dtype == np.float32
    assert len(sample.gt_boxes) == len(r.infos[0].gt_boxes)


@pytest.mark.parametrize("column, value", [(0, np.nan), (2, -np.inf), (3, np.nan)])
def test_non_finite_points_name_the_sample_and_the_file(world, column, value):
    r = reader(world)
    info = r.infos[1]
    path = world / info.sweeps[1].path  # a sweep, not the keyframe
    points = np.fromfile(path, np.float32).reshape(-1, 5)
    points[[2, 5], column] = value
    points.tofile(path)
    with pytest.raises(NuScenesFormatError, match=rf"^sample {info.token}: sweep LiDAR file {path}: 2 of {len(points)} "
                                                  r"points have a NaN or infinite x, y, z or intensity \(first at record 2\)"):
        r[1]


def test_a_non_finite_ring_index_is_not_read_so_not_an_error(world):
    r = reader(world, num_sweeps=1)
    path = world / r.infos[0].sweeps[0].path
    points = np.fromfile(path, np.float32).reshape(-1, 5)
    points[:, 4] = np.nan
    points.tofile(path)
    assert np.isfinite(r[0].points).all()


def test_missing_file_names_the_sample_and_the_file(world):
    r = reader(world)
    info = r.infos[2]
    (world / info.sweeps[0].path).unlink()
    with pytest.raises(NuScenesFormatError, match=rf"^sample {info.token}: keyframe LiDAR file not found: "
                                                  rf"{world / info.sweeps[0].path} \(sample_data filename"):
        r[2]
    assert len(r[0].points) and len(r[1].points)  # the other samples still read


def test_truncated_file_names_the_sample_and_the_file(world):
    r = reader(world)
    info = r.infos[0]
    path = world / info.sweeps[2].path
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(NuScenesFormatError, match=rf"^sample {info.token}: sweep LiDAR file {path}: expected float32 "
                                                  r"records of 5 values"):
        r[0]

