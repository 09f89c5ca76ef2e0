"""The sample reader: transforms, multi-sweep points, GT boxes and the info cache."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sparse3d.data.nuscenes import tables as tables_module
from sparse3d.detection.nuscenes.reader import NuScenesReader, NuScenesReaderConfig
from sparse3d.geometry.poses import points_in_boxes
from sparse3d.geometry.rotations import rotmats_from_quats, yaw_matrices


def _reader(db, split, num_sweeps=3, cache_dir=None):
    return NuScenesReader(NuScenesReaderConfig(str(db.root), db.version, split, num_sweeps, cache_dir=cache_dir))


def test_keyframe_points_in_lidar_frame_boxes_match_num_lidar_pts(synth_databases):
    db = synth_databases[1]
    tables = db.tables()
    checked = 0
    for sample in _reader(db, "synth_all"):
        key = sample.points[sample.points[:, 4] == 0]
        rotations = [tables.get("sample_annotation", t)["rotation"] for t in _reader_tokens(db, sample.token)]
        tilted = np.array([rotmats_from_quats(np.array(q))[2, 2] < 1 - 1e-12 for q in rotations], bool)
        boxes = sample.gt_boxes[~tilted]
        if len(boxes) == 0:
            continue
        counts = points_in_boxes(key[:, :3], boxes[:, :3], yaw_matrices(boxes[:, 6]), boxes[:, 3:6]).sum(1)
        np.testing.assert_array_equal(counts, sample.gt_num_lidar_pts[~tilted])
        checked += int((counts > 0).sum())
    assert checked > 50


def _reader_tokens(db, sample_token):
    reader = _reader(db, "synth_all")
    return next(info.gt_tokens for info in reader.infos if info.token == sample_token)


def test_multisweep_points_and_boxes_match_devkit(synth_databases):
    pytest.importorskip("nuscenes")
    from nuscenes import NuScenes
    from nuscenes.utils.data_classes import LidarPointCloud
    from pyquaternion import Quaternion

    db = synth_databases[0]
    nusc = NuScenes(db.version, str(db.root), verbose=False)
    reader = _reader(db, "synth_all", num_sweeps=3)
    assert len(reader) == len(nusc.sample)
    for sample in list(reader)[::3]:
        record = nusc.get("sample", sample.token)
        pc, times = LidarPointCloud.from_file_multisweep(nusc, record, "LIDAR_TOP", "LIDAR_TOP", nsweeps=3)
        np.testing.assert_allclose(sample.points[:, :4], pc.points.T, atol=2e-3)
        np.testing.assert_allclose(sample.points[:, 4], times[0], atol=1e-6)
        _, boxes, _ = nusc.get_sample_data(record["data"]["LIDAR_TOP"])
        evaluated = set(next(i for i in reader.infos if i.token == sample.token).gt_tokens)
        boxes = [b for b in boxes if b.token in evaluated]
        assert len(boxes) == len(sample.gt_boxes)
        for box, ours in zip(boxes, sample.gt_boxes):
            np.testing.assert_allclose(ours[:3], box.center, atol=1e-9)
            np.testing.assert_allclose(ours[[4, 3, 5]], box.wlh, atol=1e-12)
            rot = box.orientation.rotation_matrix  # heading of the box x axis, as nuScenes defines yaw
            yaw_error = np.angle(np.exp(1j * (ours[6] - np.arctan2(rot[1, 0], rot[0, 0]))))  # modulo 2 pi
            assert abs(yaw_error) < 1e-9
            velocity = nusc.box_velocity(box.token)
            sensor = Quaternion(nusc.get("calibrated_sensor", nusc.get("sample_data", record["data"]["LIDAR_TOP"])
                                         ["calibrated_sensor_token"])["rotation"])
            ego = Quaternion(nusc.get("ego_pose", nusc.get("sample_data", record["data"]["LIDAR_TOP"])
                                      ["ego_pose_token"])["rotation"])
            expected = sensor.inverse.rotate(ego.inverse.rotate(np.nan_to_num(velocity)))[:2]
            if np.isnan(velocity).any():
                assert np.isnan(ours[7:]).all()
            else:
                np.testing.assert_allclose(ours[7:], expected, atol=1e-9)


def test_sweep_count_and_time_lags(synth_databases):
    db = synth_databases[0]  # one sweep written before each keyframe, 0.05 s apart
    samples = list(_reader(db, "synth_all", num_sweeps=4))
    lags = [np.unique(s.points[:, 4]) for s in samples]
    # The first keyframe of a scene has 1 older sweep; later ones reach back 3 records.
    assert {len(lag) for lag in lags} == {2, 4}
    np.testing.assert_allclose(lags[0], [0.0, 0.05], atol=1e-6)
    single = next(iter(_reader(db, "synth_all", num_sweeps=1)))
    assert (single.points[:, 4] == 0).all()


def test_close_points_of_older_sweeps_are_dropped(synth_databases):
    db = synth_databases[0]
    config = NuScenesReaderConfig(str(db.root), db.version, "synth_all", num_sweeps=2, sweep_min_distance=6.0)
    near, default = NuScenesReader(config), _reader(db, "synth_all", num_sweeps=2)
    a, b = near[1], default[1]
    np.testing.assert_array_equal(a.points[a.points[:, 4] == 0], b.points[b.points[:, 4] == 0])
    older = a.points[a.points[:, 4] > 0]
    assert 0 < len(older) < (b.points[:, 4] > 0).sum()
    to_keyframe = np.array(near.infos[1].sweeps[1].to_keyframe)
    own = (older[:, :3] - to_keyframe[:3, 3]) @ to_keyframe[:3, :3]  # back into the sweep's own frame
    assert not ((np.abs(own[:, 0]) < 6.0 - 1e-3) & (np.abs(own[:, 1]) < 6.0 - 1e-3)).any()


def test_info_cache_skips_the_tables(synth_databases, tmp_path, monkeypatch):
    db = synth_databases[2]
    first = _reader(db, "synth_val", cache_dir=str(tmp_path))
    assert len(list(tmp_path.iterdir())) == 1

    def no_tables(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(tables_module.NuScenesTables, "__init__", no_tables)
    monkeypatch.setattr("sparse3d.detection.nuscenes.reader.NuScenesTables", tables_module.NuScenesTables)
    second = _reader(db, "synth_val", cache_dir=str(tmp_path))
    assert [json.dumps(i.__dict__, default=lambda o: o.__dict__) for i in second.infos] == \
           [json.dumps(i.__dict__, default=lambda o: o.__dict__) for i in first.infos]
    a, b = first[0], second[0]
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.gt_boxes, b.gt_boxes)
    # Touching a table changes the fingerprint: the stale cache is not used.
    sample_json = db.root / db.version / "sample.json"
    os.utime(sample_json, ns=(sample_json.stat().st_atime_ns, sample_json.stat().st_mtime_ns + 1000))
    with pytest.raises(AssertionError, match="cache should have been used"):
        _reader(db, "synth_val", cache_dir=str(tmp_path))


def test_reader_and_eval_work_without_the_devkit(synth_databases, tmp_path):
    db = synth_databases[0]
    results = db.write_submission(tmp_path / "r.json", "synth_val", seed=0)
    code = (
        "import sys; sys.modules['nuscenes'] = None\n"
        "from sparse3d.detection.nuscenes.reader import NuScenesReader, NuScenesReaderConfig\n"
        "from sparse3d.detection.nuscenes.eval import evaluate_nuscenes\n"
        f"r = NuScenesReader(NuScenesReaderConfig({str(db.root)!r}, {db.version!r}, 'synth_val', 2))\n"
        "assert len(r) > 0 and r[0].points.shape[1] == 5\n"
        f"s = evaluate_nuscenes({str(results)!r}, {str(db.root)!r}, {db.version!r}, 'synth_val', None)\n"
        "print(s['nd_score'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 0 < float(out.stdout.strip()) < 1
