"""LiDAR-frame detections -> submission entries, end to end through the evaluation."""

import json

import numpy as np
import pytest

from sparse3d.data.nuscenes.classes import DETECTION_NAMES, guess_attribute
from sparse3d.data.nuscenes.results import make_submission
from sparse3d.detection.nuscenes import NuScenesFormatError
from sparse3d.detection.nuscenes.eval import evaluate_nuscenes
from sparse3d.detection.nuscenes.reader import NuScenesReader, NuScenesReaderConfig
from sparse3d.detection.nuscenes.submission import boxes_to_submission_entries
from sparse3d.geometry.poses import Pose


@pytest.mark.parametrize("name, speed, expected", [
    ("car", 5.0, "vehicle.moving"), ("car", 0.1, "vehicle.parked"), ("bus", 0.0, "vehicle.stopped"),
    ("bus", 0.3, "vehicle.moving"), ("truck", 0.2, "vehicle.parked"), ("pedestrian", 0.0, "pedestrian.standing"),
    ("pedestrian", 1.2, "pedestrian.moving"), ("bicycle", 3.0, "cycle.with_rider"),
    ("motorcycle", 0.0, "cycle.without_rider"), ("traffic_cone", 1.0, ""), ("barrier", 0.0, ""),
    ("trailer", float("nan"), "vehicle.parked"),
])
def test_attribute_heuristic(name, speed, expected):
    assert guess_attribute(name, speed) == expected


def test_gt_as_detections_scores_perfectly(synth_databases, tmp_path):
    """GT read in the LiDAR frame and written back as a submission must score AP 1 and
    zero translation / scale / orientation / velocity / attribute errors."""
    db = synth_databases[0]
    results = {}
    for sample in NuScenesReader(NuScenesReaderConfig(str(db.root), db.version, "synth_all", num_sweeps=1)):
        keep = (sample.gt_num_lidar_pts + sample.gt_num_radar_pts) > 0
        results[sample.token] = boxes_to_submission_entries(
            sample.token, sample.gt_boxes[keep], sample.gt_labels[keep], np.full(keep.sum(), 0.9),
            sample.lidar_to_global, attributes=[a for a, k in zip(sample.gt_attributes, keep) if k])
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(make_submission(results)))
    summary = evaluate_nuscenes(path, db.root, db.version, "synth_all", None)
    present = [n for n in DETECTION_NAMES if summary["label_tp_errors"][n]["trans_err"] != 1.0]
    assert len(present) >= 8
    for name in present:
        assert all(abs(ap - 1.0) < 1e-12 for ap in summary["label_aps"][name].values()), name
        for metric, value in summary["label_tp_errors"][name].items():
            assert np.isnan(value) or value < 1e-9, (name, metric, value)


def test_entries_guess_attributes_from_global_speed():
    pose = Pose(np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), np.array([10.0, 20.0, 0.0]))
    boxes = np.array([[1.0, 2.0, 0.5, 4.0, 2.0, 1.5, 0.0, 3.0, 0.0], [5.0, 0.0, 0.5, 4.0, 2.0, 1.5, 0.3, 0.0, 0.1]])
    entries = boxes_to_submission_entries("tok", boxes, np.array([0, 0]), np.array([0.5, 0.25]), pose)
    assert [e["attribute_name"] for e in entries] == ["vehicle.moving", "vehicle.parked"]
    np.testing.assert_allclose(entries[0]["translation"], [8.0, 21.0, 0.5])
    np.testing.assert_allclose(entries[0]["velocity"], [0.0, 3.0], atol=1e-12)
    np.testing.assert_allclose(entries[0]["size"], [2.0, 4.0, 1.5])
    assert entries[1]["detection_score"] == 0.25 and entries[1]["detection_name"] == "car"


def test_entries_reject_bad_shapes():
    with pytest.raises(NuScenesFormatError, match=r"need boxes \[N, 7 or 9\]"):
        boxes_to_submission_entries("t", np.zeros((2, 5)), np.zeros(2, int), np.zeros(2), Pose(np.eye(3), np.zeros(3)))
    with pytest.raises(NuScenesFormatError, match="labels must be in"):
        boxes_to_submission_entries("t", np.ones((1, 7)), np.array([10]), np.zeros(1), Pose(np.eye(3), np.zeros(3)))
