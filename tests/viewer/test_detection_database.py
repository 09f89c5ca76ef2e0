"""The detection browser's data, without a browser: boxes in the LiDAR frame that agree
with the detectors' reader, outcome colours that are the evaluation's own matching, the
GUI's filters, point colours, and clear errors for a submission of another database."""

import json

import numpy as np
import pytest
import torch

from sparse3d.data.nuscenes.errors import NuScenesFormatError
from sparse3d.data.nuscenes.tables import NuScenesTables
from sparse3d.detection.boxes import lidar_boxes_to_global
from sparse3d.detection.nuscenes.eval.config import DetectionConfig
from sparse3d.detection.nuscenes.eval.ground_truth import BikeRacks
from sparse3d.detection.nuscenes.eval.outcomes import match_boxes
from sparse3d.detection.nuscenes.reader import NuScenesReader, NuScenesReaderConfig
from sparse3d.synthetic.lidar import SpinningLidarConfig
from sparse3d.synthetic.nuscenes import NuScenesSynthConfig, write_synthetic_nuscenes
from sparse3d.synthetic.nuscenes_mock import mock_submission

pytest.importorskip("viser")
database = pytest.importorskip("sparse3d.viewer.detection_database")
colors = pytest.importorskip("sparse3d.viewer.colors")

VERSION = "v1.0-synth"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A 2-scene database (3 samples each, 2 sweeps before each keyframe) and a mock
    submission for the first scene only."""
    root = tmp_path_factory.mktemp("nusc")
    config = NuScenesSynthConfig(seed=3, num_scenes=2, samples_per_scene=3, sweeps_per_sample=2, objects_per_scene=30,
                                 lidar=SpinningLidarConfig(azimuth_steps=540))
    write_synthetic_nuscenes(root, config)
    tables = NuScenesTables(root, VERSION)
    first_scene = tables.scene[0]["token"]
    tokens = [s["token"] for s in tables.sample if s["scene_token"] == first_scene]
    results = root / "results.json"
    results.write_text(json.dumps(mock_submission(tables, tokens, seed=1)))
    return root, results


@pytest.fixture(scope="module")
def db(synth):
    root, results = synth
    return database.DetectionDatabase(root, VERSION, results=results, num_sweeps=3)


def test_samples_come_scene_by_scene_in_time_order(db):
    assert len(db) == 6 and db.scene_starts == [0, 3]
    names = [info.scene_name for info in db.infos]
    assert names == [names[0]] * 3 + [names[3]] * 3 and names[0] != names[3]
    for start in db.scene_starts:
        times = [info.timestamp for info in db.infos[start:start + 3]]
        assert times == sorted(times)
    assert db.predicted.tolist() == [True] * 3 + [False] * 3


def test_boxes_are_the_readers_and_the_submissions(db, synth):
    root, results = synth
    reader = NuScenesReader(NuScenesReaderConfig(str(root), VERSION, None, num_sweeps=3))
    by_token = {sample.token: sample for sample in reader}
    submission = json.loads(results.read_text())["results"]
    for index in range(len(db)):
        sample = db.sample(index)
        lidar = by_token[sample.token]
        np.testing.assert_allclose(sample.points, lidar.points)
        np.testing.assert_allclose(sample.gt_boxes, lidar.gt_boxes[:, :7], atol=1e-9)
        np.testing.assert_array_equal(sample.gt_labels, lidar.gt_labels)
        if sample.pred_boxes is None:
            assert sample.token not in submission
            continue
        boxes = submission[sample.token]
        back = lidar_boxes_to_global(sample.pred_boxes, lidar.lidar_to_global)
        np.testing.assert_allclose(back["translation"], np.reshape([b["translation"] for b in boxes], (-1, 3)), atol=1e-9)
        np.testing.assert_allclose(back["size"], np.reshape([b["size"] for b in boxes], (-1, 3)), atol=1e-9)
        np.testing.assert_allclose(sample.pred_scores, [b["detection_score"] for b in boxes])


def _colors_of(outcomes):
    return np.array(colors.OUTCOME_COLORS, np.uint8)[outcomes.astype(np.int64)]


@pytest.mark.parametrize("distance, min_score", [(2.0, 0.0), (0.5, 0.3)])
def test_outcome_colours_are_the_evaluations_matching_of_that_sample(db, distance, min_score):
    """Each sample's box colours equal the evaluation's matching of that sample alone
    (the database matches all samples at once)."""
    view = database.BrowserView(min_score=min_score, match_distance=distance)
    coloured = 0
    for index in range(3):
        sample = db.sample(index)
        layers = database.sample_layers(sample, view, db.matches(distance), np.eye(4))
        gt, pred = db.gt.select(sample.gt_rows), db.pred.select(sample.pred_rows)
        gt = type(gt)(**{**vars(gt), "sample": np.zeros(len(gt), np.int64)})
        pred = type(pred)(**{**vars(pred), "sample": np.zeros(len(pred), np.int64)})
        ego = sample.lidar_to_global @ np.linalg.inv(sample.lidar_to_ego)
        racks = _sample_racks(db, index)
        gt_out, pred_out = match_boxes(gt, pred, ego[None, :3, 3], racks, DetectionConfig(), distance).outcomes(min_score)
        shown = sample.pred_scores >= min_score
        _, gt_layer, pred_layer = layers
        np.testing.assert_array_equal(gt_layer.colors.numpy(), _colors_of(gt_out))
        np.testing.assert_array_equal(pred_layer.colors.numpy(), _colors_of(pred_out[shown]))
        coloured += len(pred_out)
    assert coloured > 0


def _sample_racks(db, index):
    racks = db.racks
    keep = racks.sample == index
    return BikeRacks(np.zeros(int(keep.sum()), np.int64), racks.translation[keep], racks.size[keep], racks.rotation[keep])


def test_the_guis_filters(db):
    sample = db.sample(0)
    matches = db.matches(2.0)
    everything = database.sample_layers(sample, database.BrowserView(min_score=0.0), matches, np.eye(4))
    assert [layer.name for layer in everything] == ["points", "ground truth", "predictions"]
    assert len(everything[1].boxes) == len(sample.gt_boxes) and len(everything[2].boxes) == len(sample.pred_boxes)
    # By score: only predictions scoring at least 0.5, with their scores as labels.
    layers = database.sample_layers(sample, database.BrowserView(min_score=0.5), matches, np.eye(4))
    assert len(layers[2].boxes) == int((sample.pred_scores >= 0.5).sum()) and (layers[2].scores >= 0.5).all()
    # By class: cars only; by kind: no GT.
    car = 0
    layers = database.sample_layers(sample, database.BrowserView(min_score=0.0, classes=frozenset({car}), show_gt=False),
                                    matches, np.eye(4))
    assert [layer.name for layer in layers] == ["points", "predictions"]
    assert (layers[1].labels == car).all() and len(layers[1].labels) == int((sample.pred_labels == car).sum())
    # By class colour instead of outcome; a sample the submission does not list has only GT, coloured by class.
    layers = database.sample_layers(sample, database.BrowserView(color_by_outcome=False), matches, np.eye(4))
    assert layers[1].colors is None and layers[2].colors is None
    unlisted = database.sample_layers(db.sample(3), database.BrowserView(), matches, np.eye(4))
    assert [layer.name for layer in unlisted] == ["points", "ground truth"] and unlisted[1].colors is None


def test_layers_are_placed_in_the_world_frame(db):
    sample = db.sample(1)
    to_world = np.eye(4)
    to_world[:3, 3] = (10.0, -5.0, 1.0)
    points, gt, _ = database.sample_layers(sample, database.BrowserView(), db.matches(2.0), to_world)
    np.testing.assert_allclose(points.points.numpy(), sample.points[:, :3] + to_world[:3, 3], atol=1e-4)
    np.testing.assert_allclose(gt.lidar_to_world.numpy(), to_world)
    torch.testing.assert_close(gt.boxes, torch.as_tensor(sample.gt_boxes, dtype=torch.float32))


def test_point_colours(db):
    sample = db.sample(2)
    turbo_low = colors.mapped_colors(np.array([0.0]), value_range=(0.0, 1.0))[0]
    turbo_high = colors.mapped_colors(np.array([1.0]), value_range=(0.0, 1.0))[0]
    # Sweep time: the keyframe's points at one end of the map, the oldest sweep's at the other.
    by_time = database.point_colors(sample, "sweep time")
    lag = sample.points[:, 4]
    assert len(np.unique(lag)) == 3
    assert (by_time[lag == 0] == turbo_low).all() and (by_time[lag == lag.max()] == turbo_high).all()
    # Height above the ego's ground: the synthetic road (global z = 0) gets the colour of 0 m.
    by_height = database.point_colors(sample, "height")
    world_z = sample.points[:, :3].astype(np.float64) @ sample.lidar_to_global[2, :3] + sample.lidar_to_global[2, 3]
    road = np.abs(world_z) < 0.01
    assert road.mean() > 0.1
    expected = colors.mapped_colors(np.array([0.0]), value_range=database.HEIGHT_RANGE)[0]
    assert (np.abs(by_height[road].astype(int) - expected).max(axis=1) <= 4).all()  # the road has 1 cm of noise
    with pytest.raises(ValueError, match="point colouring must be one of"):
        database.point_colors(sample, "colour")


def test_a_submission_of_another_database_is_refused(synth, tmp_path):
    root, results = synth
    other = json.loads(results.read_text())
    other["results"] = {f"elsewhere-{i}": boxes for i, boxes in enumerate(other["results"].values())}
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other))
    with pytest.raises(NuScenesFormatError, match=r"other.json: none of its 3 samples is in .*v1.0-synth"):
        database.DetectionDatabase(root, VERSION, results=path)
    # Extra samples beside the database's own are counted, not fatal.
    mixed = json.loads(results.read_text())
    mixed["results"]["elsewhere"] = []
    path.write_text(json.dumps(mixed))
    assert database.DetectionDatabase(root, VERSION, results=path).extra_samples == 1


def test_browser_steps_through_scenes_and_counts_outcomes(db):
    browser = pytest.importorskip("sparse3d.viewer.detection_browser")
    viewer = browser.NuScenesViewer(db, port=0)
    try:
        assert viewer.refresh() and not viewer.refresh() and viewer.index == 0
        viewer.gui_score.value = 0.0
        _, gt, pred = viewer.shown_layers
        counts = [int((torch.cat([gt.colors, pred.colors]) == torch.tensor(colors.OUTCOME_COLORS[o], dtype=torch.uint8))
                      .all(1).sum()) for o in range(3)]
        assert counts[1] > 0 and counts[2] > 0
        # GT and predictions both count a true positive once; FP and FN once each.
        assert f"within 2 m: {counts[0] // 2} TP, {counts[1]} FP, {counts[2]} FN" in viewer.status
        viewer._step_scene(1)
        assert viewer.index == 3 and "(2/2) · sample 1/3" in viewer.status and viewer.gui_sample.value == 3
        assert "the submission does not list this sample" in viewer.status
        viewer._step_scene(1)  # past the last scene: back to the first
        assert viewer.index == 0
    finally:
        viewer.stop()
