"""The GT database: building on a tiny synthetic nuScenes database, stale and missing
databases, the `sparse3d-data nuscenes-gtdb` verb, and GT sampling (no overlaps, points
removed and pasted, minimum points, LIMIT_WHOLE_SCENE, determinism)."""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sparse3d.cli.data import entrypoint
from sparse3d.core.bev_nms import bev_iou
from sparse3d.data.nuscenes.classes import DETECTION_NAMES
from sparse3d.detection.gt_database import (
    GtDatabaseError,
    GtObjects,
    GtSamplerConfig,
    box_members,
    build_gt_database,
    gt_database_dir,
    load_gt_database,
    sample_gt,
)
from sparse3d.detection.nuscenes.reader import NuScenesReader, NuScenesReaderConfig
from sparse3d.geometry.poses import points_in_boxes
from sparse3d.geometry.rotations import yaw_matrices
from sparse3d.synthetic.lidar import SpinningLidarConfig
from sparse3d.synthetic.nuscenes import NuScenesSynthConfig, write_synthetic_nuscenes

VERSION = "v1.0-synth"
SYNTH = NuScenesSynthConfig(seed=0, num_scenes=2, samples_per_scene=3, sweeps_per_sample=1, objects_per_scene=12,
                            lidar=SpinningLidarConfig(azimuth_steps=360))


@pytest.fixture(scope="module")
def dataroot(tmp_path_factory) -> Path:
    return write_synthetic_nuscenes(tmp_path_factory.mktemp("nusc_gtdb"), SYNTH)


def _reader_config(root, split="synth_train", num_sweeps=2) -> NuScenesReaderConfig:
    return NuScenesReaderConfig(str(root), VERSION, split, num_sweeps)


@pytest.fixture(scope="module")
def database(dataroot):
    return build_gt_database(_reader_config(dataroot))


def _inside(points, boxes):
    return points_in_boxes(points[:, :3], boxes[:, :3], yaw_matrices(boxes[:, 6]), boxes[:, 3:6])


def test_build_round_trips_every_object(dataroot, database):
    reader = NuScenesReader(_reader_config(dataroot))
    folder = gt_database_dir(_reader_config(dataroot))
    assert database.folder == folder and (folder / "index.json").is_file()
    assert database.sample_tokens == [info.token for info in reader.infos]
    expected_counts = {name: 0 for name in DETECTION_NAMES}
    for info in reader.infos:
        for label in info.gt_labels:
            expected_counts[DETECTION_NAMES[label]] += 1
    assert database.counts == expected_counts
    loaded = load_gt_database(folder, _reader_config(dataroot))
    samples = list(reader)
    stored = 0
    for name in DETECTION_NAMES:
        objects = loaded.objects(name)
        assert objects.boxes.shape == (expected_counts[name], 9)
        for i, box in enumerate(objects.boxes):
            relative = loaded.points(name, i)
            assert relative.dtype == np.float32 and relative.shape == (objects.num_points[i], 5)
            absolute = relative.copy()
            absolute[:, :3] += box[:3].astype(np.float32)
            # float32 round trip through the box-centred frame: test against a slightly grown box
            grown = box.copy()
            grown[3:6] += 1e-3
            assert _inside(absolute, grown[None]).all()
            sample = samples[objects.sample_index[i]]
            np.testing.assert_array_equal(sample.gt_boxes[objects.gt_index[i]], box)
            assert DETECTION_NAMES[sample.gt_labels[objects.gt_index[i]]] == name
            # exactly the sample's points inside the box, in reader order
            rows = box_members(sample.points, box[None])[0]
            np.testing.assert_allclose(absolute, sample.points[rows], atol=1e-5)
            stored += len(relative)
    assert stored > 200  # the tiny database still holds real objects
    assert sum((loaded.objects(n).num_points >= 5).sum() for n in DETECTION_NAMES) >= 10


def test_missing_and_unfinished_databases_are_reported(tmp_path, dataroot):
    with pytest.raises(GtDatabaseError, match=r"no GT database at .*missing index.json.*sparse3d-data nuscenes-gtdb"):
        load_gt_database(tmp_path / "nothing", _reader_config(dataroot))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "index.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(GtDatabaseError, match="expected GT database format 1, got 99"):
        load_gt_database(tmp_path / "broken")


def test_stale_database_is_detected(tmp_path, dataroot):
    root = Path(shutil.copytree(dataroot, tmp_path / "copy", ignore=shutil.ignore_patterns("sparse3d_gtdb_*")))
    config = _reader_config(root)
    build_gt_database(config)
    load_gt_database(gt_database_dir(config), config)  # fresh: fine
    with pytest.raises(GtDatabaseError, match=r"stale GT database.*num_sweeps=2.*num_sweeps=3.*rebuild it with "
                                              r"`sparse3d-data nuscenes-gtdb .* split=synth_train num_sweeps=3`"):
        load_gt_database(gt_database_dir(config), _reader_config(root, num_sweeps=3))
    table = root / VERSION / "sample_annotation.json"
    stat = table.stat()
    os.utime(table, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the table was edited
    with pytest.raises(GtDatabaseError, match=r"index.json: stale GT database"):
        load_gt_database(gt_database_dir(config), config)


def test_cli_verb_builds_and_reports(tmp_path, dataroot, capsys):
    root = Path(shutil.copytree(dataroot, tmp_path / "copy", ignore=shutil.ignore_patterns("sparse3d_gtdb_*")))
    entrypoint(["nuscenes-gtdb", str(root), f"version={VERSION}", "split=synth_train", "num_sweeps=2"])
    out = capsys.readouterr().out
    folder = root / f"sparse3d_gtdb_{VERSION}_synth_train"
    assert f"wrote GT database {folder}" in out
    database = load_gt_database(folder, _reader_config(root))
    for name in DETECTION_NAMES:
        assert f"  {name}: {database.counts[name]} objects (" in out
    entrypoint(["nuscenes-gtdb", str(root), f"version={VERSION}", "split=synth_val", f"out={tmp_path / 'val_db'}"])
    assert (tmp_path / "val_db" / "index.json").is_file()


@pytest.mark.parametrize("args, message", [
    (["nuscenes-gtdb"], "missing the dataroot"),
    (["nuscenes-gtdb", "{missing}"], r"DATAROOT=.*missing is not a folder"),
    (["nuscenes-gtdb", "{root}", "version=v1.0-nope"], r"no table folder 'v1.0-nope' in .* \(found: v1.0-synth\)"),
    (["nuscenes-gtdb", "{root}", f"version={VERSION}", "split=nope"], "no split 'nope'"),
    (["nuscenes-gtdb", "{root}", "num_sweeps=0"], "expected a value >= 1"),
    (["nuscenes-gtdb", "{root}", "splt=train"], "unknown key 'splt'"),
])
def test_cli_verb_errors_are_one_line(tmp_path, dataroot, capsys, args, message):
    args = [a.format(missing=tmp_path / "missing", root=dataroot) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        entrypoint(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("sparse3d-data: error: ") and re.search(message, last), err
    assert "Traceback" not in err


# ---------------------------------------------------------------- sampling


def _pairwise_iou(a, b):
    return bev_iou(torch.from_numpy(np.ascontiguousarray(a[:, :7], np.float32)),
                   torch.from_numpy(np.ascontiguousarray(b[:, :7], np.float32))).numpy()


def test_sampling_on_real_scenes_never_overlaps_and_moves_points(dataroot, database):
    reader = NuScenesReader(_reader_config(dataroot))
    config = GtSamplerConfig(min_points=tuple(f"{n}:3" for n in DETECTION_NAMES))
    pasted_total = 0
    for seed in range(6):
        raw = reader[seed % len(reader)]
        points, boxes, labels = sample_gt(raw.points, raw.gt_boxes, raw.gt_labels, database, config,
                                          np.random.default_rng(seed))
        m = len(raw.gt_boxes)
        np.testing.assert_array_equal(boxes[:m], raw.gt_boxes)
        np.testing.assert_array_equal(labels[:m], raw.gt_labels)
        new = boxes[m:]
        pasted_total += len(new)
        if not len(new):
            continue
        iou_new = _pairwise_iou(new, new)
        np.fill_diagonal(iou_new, 0)
        assert (iou_new == 0).all() and (_pairwise_iou(new, raw.gt_boxes) == 0).all()
        # pasted points come first: each pasted box holds exactly its object's points, the
        # scene points that were inside it are gone
        n_pasted = len(points) - (len(raw.points) - len(np.unique(np.concatenate(box_members(raw.points, new)))))
        # pasted objects went through float32 box-centred coordinates: count them in
        # slightly grown boxes (and check the scene part in slightly shrunk ones)
        grown, shrunk = new.copy(), new.copy()
        grown[:, 3:6] += 1e-3
        shrunk[:, 3:6] -= 1e-3
        assert not _inside(points[n_pasted:], shrunk).any()
        counts = _inside(points[:n_pasted], grown).sum(1)
        assert (counts >= 3).all() and counts.sum() == n_pasted
    assert pasted_total > 0


class _FakeDatabase:
    """A hand-made database with the GtDatabase interface: cars on a grid, 10 m apart."""

    def __init__(self, boxes, num_points, name="car"):
        self.folder = Path("fake")
        self.num_point_features = 5
        self.name = name
        offsets = np.concatenate([[0], np.cumsum(num_points)]).astype(np.int64)
        self._objects = GtObjects(np.asarray(boxes, np.float64), offsets, np.zeros(len(boxes), np.int64),
                                  np.arange(len(boxes), dtype=np.int64))
        rng = np.random.default_rng(0)
        self._points = []
        for box, n in zip(self._objects.boxes, num_points):
            local = rng.uniform(-0.45, 0.45, (n, 3)) * box[3:6]
            xyz = local @ yaw_matrices(box[6]).T
            self._points.append(np.concatenate([xyz, np.full((n, 2), 0.25)], 1).astype(np.float32))

    def objects(self, name):
        if name == self.name:
            return self._objects
        return GtObjects(np.zeros((0, 9)), np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))

    def points(self, name, i):
        return self._points[i].copy()

    def pool(self, name, min_points):
        return np.flatnonzero(self.objects(name).num_points >= min_points)


def _grid_cars(n, velocity=(1.0, 0.0)):
    xs = 10.0 * (np.arange(n) % 5) - 20.0
    ys = 10.0 * (np.arange(n) // 5) + 10.0
    return np.stack([xs, ys, np.zeros(n), np.full(n, 4.0), np.full(n, 2.0), np.full(n, 1.5), np.full(n, 0.3),
                     np.full(n, velocity[0]), np.full(n, velocity[1])], 1)


def _scene(car_boxes):
    rng = np.random.default_rng(1)
    points = np.concatenate([rng.uniform(-30, 30, (4000, 2)), rng.uniform(-1, 1, (4000, 1)),
                             np.zeros((4000, 2))], 1).astype(np.float32)
    boxes = np.asarray(car_boxes, np.float64).reshape(-1, 9)
    return points, boxes, np.zeros(len(boxes), np.int64)  # label 0 = car


CARS_ONLY = dict(sample_groups=("car:4",), min_points=("car:5",))


def test_limit_whole_scene_and_min_points():
    boxes = _grid_cars(20)
    num_points = np.where(np.arange(20) % 2 == 0, 8, 3)  # odd objects are below the minimum
    db = _FakeDatabase(boxes, num_points)
    scene_car = [[0, -10, 0, 4, 2, 1.5, 0, 0, 0]]  # far from the grid
    for seed in range(10):
        points, out_boxes, labels = sample_gt(*_scene(scene_car), db, GtSamplerConfig(**CARS_ONLY),
                                              np.random.default_rng(seed))
        assert len(out_boxes) == 4 and (labels == 0).all()  # 4 cars in all: 3 pasted
        chosen = [int(np.flatnonzero((boxes == b).all(1))[0]) for b in out_boxes[1:]]
        assert all(num_points[i] == 8 for i in chosen) and len(set(chosen)) == 3
        assert len(points) == 4000 - _inside(_scene(scene_car)[0], out_boxes[1:]).any(0).sum() + 24
    unlimited = GtSamplerConfig(**CARS_ONLY, limit_whole_scene=False)
    assert len(sample_gt(*_scene(scene_car), db, unlimited, np.random.default_rng(0))[1]) == 5
    crowded = [[0, -10 - 5 * k, 0, 4, 2, 1.5, 0, 0, 0] for k in range(4)]
    points, out_boxes, _ = sample_gt(*_scene(crowded), db, GtSamplerConfig(**CARS_ONLY), np.random.default_rng(0))
    assert len(out_boxes) == 4 and len(points) == 4000  # already 4 cars: nothing pasted, points untouched
    none_enough = GtSamplerConfig(sample_groups=("car:4",), min_points=("car:9",))
    assert len(sample_gt(*_scene(scene_car), db, none_enough, np.random.default_rng(0))[1]) == 1


def test_collisions_with_the_scene_and_between_candidates():
    boxes = _grid_cars(10)
    db = _FakeDatabase(boxes, np.full(10, 6))
    blocker = boxes[3].copy()
    blocker[:2] += 1.0  # overlaps database object 3
    for seed in range(20):
        config = GtSamplerConfig(sample_groups=("car:10",), limit_whole_scene=False)
        _, out_boxes, _ = sample_gt(*_scene([blocker]), db, config, np.random.default_rng(seed))
        assert not (out_boxes[1:] == boxes[3]).all(1).any()
        assert len(out_boxes) == 1 + 9  # all 10 drawn, all but the blocked one pasted
    # two candidates that overlap each other are both dropped (not first come, first served)
    pair = _grid_cars(2)
    pair[1, :2] = pair[0, :2] + [1.0, 0.5]
    _, out_boxes, _ = sample_gt(*_scene([]), _FakeDatabase(pair, [6, 6]), GtSamplerConfig(sample_groups=("car:2",)),
                                np.random.default_rng(0))
    assert len(out_boxes) == 0


def test_earlier_classes_claim_space_first():
    """A truck group sampled after cars cannot land on a pasted car."""
    cars, trucks = _grid_cars(5), _grid_cars(5)
    trucks[:, :2] += 0.5

    class TwoClasses(_FakeDatabase):
        def objects(self, name):
            if name == "truck":
                return GtObjects(trucks, self._objects.offsets, self._objects.sample_index, self._objects.gt_index)
            return super().objects(name)

    db = TwoClasses(cars, np.full(5, 6))
    config = GtSamplerConfig(sample_groups=("car:5", "truck:5"), min_points=())
    _, out_boxes, labels = sample_gt(*_scene([]), db, config, np.random.default_rng(0))
    assert (labels == DETECTION_NAMES.index("car")).sum() == 5 and len(labels) == 5


def test_sampling_is_deterministic_and_keeps_nan_velocities():
    boxes = _grid_cars(20, velocity=(np.nan, np.nan))
    db = _FakeDatabase(boxes, np.full(20, 6))
    config = GtSamplerConfig(sample_groups=("car:5",))
    a = sample_gt(*_scene([]), db, config, np.random.default_rng(4))
    b = sample_gt(*_scene([]), db, config, np.random.default_rng(4))
    c = sample_gt(*_scene([]), db, config, np.random.default_rng(5))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], c[1])
    assert np.isnan(a[1][:, 7:9]).all() and np.isfinite(a[1][:, :7]).all()
    # pasted points are first and sit inside their boxes
    assert _inside(a[0][:30], a[1]).sum() == 30


def test_bad_inputs_are_reported(database):
    with pytest.raises(ValueError, match=r"points must be \[P, 5\] like the GT database"):
        sample_gt(np.zeros((3, 4), np.float32), np.zeros((0, 9)), np.zeros(0, np.int64), database,
                  GtSamplerConfig(), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"boxes must be \[M, 9\] and labels \[M\]"):
        sample_gt(np.zeros((3, 5), np.float32), np.zeros((2, 7)), np.zeros(2, np.int64), database,
                  GtSamplerConfig(), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"GtSamplerConfig.sample_groups: expected 'class:count'.*'lorry:2'"):
        GtSamplerConfig(sample_groups=("lorry:2",))
    with pytest.raises(ValueError, match="class 'car' is given twice"):
        GtSamplerConfig(min_points=("car:5", "car:6"))
