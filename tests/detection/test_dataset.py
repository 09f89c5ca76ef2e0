"""Training batches are a pure function of (seed, step); the processing steps hold on
every sample; collation; the eval loader."""

from pathlib import Path

import numpy as np
import pytest
import torch

from sparse3d.data.nuscenes.classes import DETECTION_NAMES
from sparse3d.detection.batch import DetectionSample, collate
from sparse3d.detection.dataset import (
    DetectionDataConfig,
    DetectionEvalData,
    DetectionTrainData,
)
from sparse3d.detection.gt_database import GtDatabaseError, GtSamplerConfig
from sparse3d.detection.nuscenes.reader import NuScenesReader
from sparse3d.geometry.poses import Pose
from sparse3d.synthetic.lidar import SpinningLidarConfig
from sparse3d.synthetic.nuscenes import NuScenesSynthConfig, write_synthetic_nuscenes

SYNTH = NuScenesSynthConfig(seed=3, num_scenes=2, samples_per_scene=3, sweeps_per_sample=1, objects_per_scene=12,
                            lidar=SpinningLidarConfig(azimuth_steps=360))
RANGE = (-30.0, -30.0, -5.0, 30.0, 30.0, 3.0)  # smaller than the scene, so masking has work to do


@pytest.fixture(scope="module")
def dataroot(tmp_path_factory) -> Path:
    return write_synthetic_nuscenes(tmp_path_factory.mktemp("nusc_data"), SYNTH)


def _config(**changes) -> DetectionDataConfig:
    # a lower minimum than the reference's 5: the tiny database has few well-sampled objects
    sampler = GtSamplerConfig(min_points=tuple(f"{n}:2" for n in DETECTION_NAMES))
    values = dict(version="v1.0-synth", train_split="synth_train", val_split="synth_val",
                  num_sweeps=2, point_cloud_range=RANGE, gt_sampling=sampler)
    return DetectionDataConfig(**{**values, **changes})


@pytest.fixture(scope="module")
def train_data(dataroot) -> DetectionTrainData:
    return DetectionTrainData(_config(), dataroot)


def _assert_batches_equal(a, b):
    for name in ("points", "batch_index", "gt_boxes", "gt_labels", "gt_counts"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0, equal_nan=True)
    assert a.tokens == b.tokens


def test_batch_is_a_pure_function_of_seed_and_step(dataroot, train_data):
    a = train_data.batch(step=2, batch_size=3, seed=11)
    train_data.batch(step=0, batch_size=3, seed=5)  # other calls in between change nothing
    fresh = DetectionTrainData(_config(), dataroot)  # nor does a new instance (a resumed run)
    _assert_batches_equal(a, fresh.batch(step=2, batch_size=3, seed=11))
    _assert_batches_equal(a, train_data.batch(step=2, batch_size=3, seed=11))
    other_step = train_data.batch(step=3, batch_size=3, seed=11)
    other_seed = train_data.batch(step=2, batch_size=3, seed=12)
    for other in (other_step, other_seed):
        assert other.points.shape != a.points.shape or not torch.equal(other.points, a.points)


def test_samples_do_not_depend_on_the_batch_size(train_data):
    wide = train_data.batch(step=1, batch_size=4, seed=0)  # positions 4..7
    narrow = train_data.batch(step=2, batch_size=2, seed=0)  # positions 4, 5
    n = int((wide.batch_index < 2).sum())
    torch.testing.assert_close(wide.points[:n], narrow.points, rtol=0, atol=0)
    assert wide.tokens[:2] == narrow.tokens


def test_every_sample_is_processed(train_data):
    config = train_data.config
    r = np.array(config.point_cloud_range)
    pasted = 0
    epoch = 0
    for index in range(train_data.epoch_length):
        sample = train_data.sample(index, epoch, seed=1)
        assert sample.points.dtype == np.float32 and sample.points.shape[1] == 5
        xy = sample.points[:, :2]
        assert ((xy >= r[:2]) & (xy <= r[3:5])).all()
        centres = sample.gt_boxes[:, :3]
        assert len(centres) and ((centres >= r[:3]) & (centres <= r[3:])).all()
        assert ((sample.gt_labels >= 0) & (sample.gt_labels < len(config.class_names))).all()
        assert np.isfinite(sample.gt_boxes).all()  # NaN velocities set to 0
        assert ((sample.gt_boxes[:, 6] >= -np.pi) & (sample.gt_boxes[:, 6] < np.pi)).all()
        raw = train_data.reader[int(train_data.epoch_order(epoch, 1)[index])]
        pasted += max(0, len(sample.gt_boxes) - int((raw.gt_num_lidar_pts >= 1).sum()))
    assert pasted > 0  # GT sampling added objects


def test_class_filter_and_labels(dataroot):
    names = ("pedestrian", "car")
    data = DetectionTrainData(_config(class_names=names, gt_sampling=GtSamplerConfig(enabled=False)), dataroot)
    assert data.database is None
    for index in range(data.epoch_length):
        sample = data.sample(index, 0, seed=0)
        raw = data.reader[int(data.epoch_order(0, 0)[index])]
        kept = (raw.gt_num_lidar_pts >= 1) & np.isin(raw.gt_labels, [DETECTION_NAMES.index(n) for n in names])
        assert set(sample.gt_labels.tolist()) <= {0, 1}
        assert len(sample.gt_labels) <= kept.sum()  # no GT sampling: range masking can only remove


def test_epoch_order_cbgs_and_gt_sampling_stop(dataroot, train_data):
    n = train_data.epoch_length
    order0, order1 = train_data.epoch_order(0, 7).copy(), train_data.epoch_order(1, 7)
    assert len(order0) == n and sorted(order0) == sorted(order1) and not np.array_equal(order0, order1)
    plain = DetectionTrainData(_config(cbgs=False, gt_sampling=GtSamplerConfig(enabled=False)), dataroot)
    assert plain.epoch_length == len(plain.reader)
    assert sorted(plain.epoch_order(0, 0)) == list(range(len(plain.reader)))
    stopping = DetectionTrainData(_config(gt_sampling_stop_epoch=1), dataroot)
    grew = {0: 0, 1: 0}
    for epoch in (0, 1):
        for index in range(n):
            sample = stopping.sample(index, epoch, seed=2)
            raw = stopping.reader[int(stopping.epoch_order(epoch, 2)[index])]
            grew[epoch] += len(sample.gt_boxes) > int((raw.gt_num_lidar_pts >= 1).sum())
    assert grew[0] > 0 and grew[1] == 0


def test_batch_layout_fits_voxelize(train_data):
    from sparse3d.core.voxelize import voxelize

    batch = train_data.batch(step=0, batch_size=3, seed=0)
    assert batch.batch_size == 3 and batch.points.dtype == torch.float32 and batch.batch_index.dtype == torch.int32
    assert batch.gt_boxes.shape == (3, int(batch.gt_counts.max()), 9) and batch.gt_labels.dtype == torch.int64
    for b in range(3):
        count = int(batch.gt_counts[b])
        assert (batch.gt_labels[b, :count] >= 0).all() and (batch.gt_labels[b, count:] == -1).all()
        assert (batch.gt_boxes[b, count:] == 0).all()
    assert torch.equal(torch.unique_consecutive(batch.batch_index), torch.arange(3, dtype=torch.int32))
    voxels = voxelize(batch.points, train_data.config.point_cloud_range, [0.5, 0.5, 0.5], batch=batch.batch_index)
    assert set(voxels.coords[:, 0].tolist()) == {0, 1, 2}


def test_collate_checks_its_input():
    pose = Pose(np.eye(3), np.zeros(3))
    a = DetectionSample("a", np.zeros((4, 5), np.float32), np.zeros((2, 9)), np.zeros(2, np.int64), pose)
    b = DetectionSample("b", np.zeros((3, 4), np.float32), np.zeros((0, 9)), np.zeros(0, np.int64), pose)
    with pytest.raises(ValueError, match="same F"):
        collate([a, b])
    with pytest.raises(ValueError, match="at least one sample"):
        collate([])
    c = DetectionSample("c", np.zeros((3, 5), np.float32), np.zeros((1, 7)), np.zeros(1, np.int64), pose)
    with pytest.raises(ValueError, match=r"sample c: gt_boxes must be \[M, 9\]"):
        collate([a, c])
    empty = DetectionSample("e", np.zeros((0, 5), np.float32), np.zeros((0, 9)), np.zeros(0, np.int64), pose)
    batch = collate([empty, empty])
    assert batch.gt_boxes.shape == (2, 0, 9) and batch.points.shape == (0, 5)


def test_eval_data_in_order_without_augmentation(dataroot):
    config = _config()
    data = DetectionEvalData(config, dataroot)
    reader = NuScenesReader(config.reader_config(dataroot, "synth_val"))
    assert len(data) == len(reader)
    tokens = []
    for batch in data.batches(2):
        tokens += batch.tokens
    assert tokens == [info.token for info in reader.infos]
    raw = reader[1]
    sample = data.sample(1)
    r = config.point_cloud_range
    in_range = raw.points[(raw.points[:, 0] >= r[0]) & (raw.points[:, 0] <= r[3]) & (raw.points[:, 1] >= r[1])
                          & (raw.points[:, 1] <= r[4])]
    order = np.lexsort(sample.points.T)
    np.testing.assert_array_equal(sample.points[order], in_range[np.lexsort(in_range.T)])  # same points, shuffled
    assert not np.array_equal(sample.points, in_range)
    np.testing.assert_array_equal(data.sample(1).points, sample.points)  # the shuffle is fixed
    expected = raw.gt_boxes[raw.gt_num_lidar_pts >= 1].copy()
    expected[:, 7:9][np.isnan(expected[:, 7:9])] = 0
    np.testing.assert_array_equal(sample.gt_boxes, expected)  # not augmented, not range-filtered


def test_stale_database_and_bad_config_are_reported(dataroot, train_data):
    with pytest.raises(GtDatabaseError, match="stale GT database"):
        DetectionTrainData(_config(num_sweeps=3), dataroot)  # the database was built with 2 sweeps
    with pytest.raises(ValueError, match="point_cloud_range"):
        _config(point_cloud_range=(0, 0, 0, 1, 1))
    with pytest.raises(ValueError, match="class_names"):
        _config(class_names=("car", "lorry"))
    with pytest.raises(ValueError, match="num_sweeps"):
        _config(num_sweeps=0)


def test_samples_without_boxes_are_redrawn(dataroot, train_data):
    """With one class only, scenes without it are replaced by scenes drawn from the epoch's
    list; a class no scene holds is an error after the redraws."""
    reader = train_data.reader

    def boxes_of(raw, name):
        return raw.gt_boxes[(raw.gt_num_lidar_pts >= 1) & (raw.gt_labels == DETECTION_NAMES.index(name))]

    def certain(raw, name):  # a box that stays in range whatever the rotation, scaling and shift
        boxes = boxes_of(raw, name)
        return bool(((np.hypot(boxes[:, 0], boxes[:, 1]) < 24) & (np.abs(boxes[:, 2]) < 2)).any())

    name = next(n for n in DETECTION_NAMES
                if any(certain(raw, n) for raw in reader) and not all(len(boxes_of(raw, n)) for raw in reader))
    no_sampling = GtSamplerConfig(enabled=False)
    data = DetectionTrainData(_config(class_names=(name,), cbgs=False, gt_sampling=no_sampling), dataroot)
    possible = {info.token for info, raw in zip(reader.infos, reader) if len(boxes_of(raw, name))}
    for index in range(data.epoch_length):
        sample = data.sample(index, 0, seed=0)
        assert len(sample.gt_boxes) and sample.token in possible
    absent = [n for n in DETECTION_NAMES if not any(len(boxes_of(raw, n)) for raw in reader)]
    if absent:
        empty = DetectionTrainData(_config(class_names=(absent[0],), cbgs=False, gt_sampling=no_sampling), dataroot)
        with pytest.raises(ValueError, match="in a row have no GT box"):
            empty.sample(0, 0, seed=0)


def test_only_the_configured_classes_are_pasted(dataroot, train_data):
    """class_names=(car,) with no car eligible: nothing may be pasted (other classes are not
    sampled at all), so the samples equal those without GT sampling."""
    nothing_eligible = GtSamplerConfig(min_points=("car:100000",))
    with_sampling = DetectionTrainData(_config(class_names=("car",), gt_sampling=nothing_eligible), dataroot)
    without = DetectionTrainData(_config(class_names=("car",), gt_sampling=GtSamplerConfig(enabled=False)), dataroot)
    assert with_sampling.database is not None
    _assert_batches_equal(with_sampling.batch(0, 3, seed=4), without.batch(0, 3, seed=4))
