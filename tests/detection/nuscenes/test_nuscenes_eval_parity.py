"""Our evaluation against the official devkit on generated databases: every number of
metrics_summary.json (and of the 40 curves in metrics_details.json) must agree to 1e-9."""

import json

import numpy as np
import pytest

from sparse3d.data.nuscenes.splits import scenes_of_split
from sparse3d.detection.nuscenes.eval import DetectionConfig, evaluate_nuscenes
from sparse3d.detection.nuscenes.eval.compare import max_abs_diff
from sparse3d.detection.nuscenes.eval.filters import filter_boxes
from sparse3d.detection.nuscenes.eval.ground_truth import (
    BikeRacks,
    load_split_ground_truth,
)
from sparse3d.detection.nuscenes.submission import submission_to_boxes
from sparse3d.synthetic.nuscenes_mock import mock_submission

nuscenes = pytest.importorskip("nuscenes")


def _devkit_eval(db, split, results_path, out_dir):
    from nuscenes import NuScenes
    from nuscenes.eval.detection.config import config_factory
    from nuscenes.eval.detection.evaluate import NuScenesEval

    nusc = NuScenes(db.version, str(db.root), verbose=False)
    NuScenesEval(nusc, config_factory("detection_cvpr_2019"), str(results_path), split, str(out_dir),
                 verbose=False).main(render_curves=False)
    return (json.loads((out_dir / "metrics_summary.json").read_text()),
            json.loads((out_dir / "metrics_details.json").read_text()))


def test_generated_databases_cover_the_eval_edge_cases(synth_databases):
    """The parity test below is only meaningful if the data holds the tricky cases."""
    names = ("rack", "rack_removes_gt", "rack_removes_pred", "zero_pts", "zero_pts_radar", "nan_velocity", "far",
             "ties", "empty", "nan_pred_velocity")
    seen = dict.fromkeys(names, 0)
    for db in synth_databases:
        tables = db.tables()
        anns = tables.sample_annotation
        seen["rack"] += sum(tables.category_name(a) == "static_object.bicycle_rack" for a in anns)
        seen["zero_pts"] += sum(a["num_lidar_pts"] == 0 for a in anns)
        seen["zero_pts_radar"] += sum(a["num_lidar_pts"] == 0 and a["num_radar_pts"] > 0 for a in anns)
        seen["nan_velocity"] += int(np.isnan(tables.box_velocities(anns)[:, 0]).sum())
        for sample in tables.sample:
            ego = tables.get("ego_pose", tables.keyframe_lidar(sample["token"])["ego_pose_token"])["translation"]
            seen["far"] += sum(np.hypot(a["translation"][0] - ego[0], a["translation"][1] - ego[1]) > 50
                               for a in tables.sample_annotations(sample["token"]))
        split = db.splits[-1]
        tokens = tables.samples_of_scenes(scenes_of_split(db.root, db.version, split))
        results = mock_submission(tables, tokens, seed=0)["results"]
        truth = load_split_ground_truth(db.root, db.version, split)
        no_racks = BikeRacks(np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 4)))
        pred = submission_to_boxes(results, tokens)
        for key, boxes in (("rack_removes_gt", truth.boxes), ("rack_removes_pred", pred)):
            without = filter_boxes(boxes, truth.ego_translation, no_racks, DetectionConfig())
            with_racks = filter_boxes(boxes, truth.ego_translation, truth.racks, DetectionConfig())
            seen[key] += len(without) - len(with_racks)
        scores = [b["detection_score"] for boxes in results.values() for b in boxes]
        seen["ties"] += len(scores) - len(set(scores))
        seen["empty"] += sum(len(boxes) == 0 for boxes in results.values())
        seen["nan_pred_velocity"] += sum(np.isnan(b["velocity"][0]) for boxes in results.values() for b in boxes)
    assert all(count > 0 for count in seen.values()), seen


@pytest.mark.parametrize("db_index", [0, 1, 2, 3])
@pytest.mark.parametrize("pred_seed", [0, 1])
def test_metrics_match_devkit(synth_databases, db_index, pred_seed, tmp_path):
    db = synth_databases[db_index]
    for split in db.splits:
        results = db.write_submission(tmp_path / f"{split}.json", split, seed=pred_seed)
        ref_summary, ref_details = _devkit_eval(db, split, results, tmp_path / f"devkit_{split}")
        ours = evaluate_nuscenes(results, db.root, db.version, split, tmp_path / f"ours_{split}")
        assert max_abs_diff(ref_summary, ours) <= 1e-9
        written = json.loads((tmp_path / f"ours_{split}" / "metrics_summary.json").read_text())
        assert max_abs_diff(ref_summary, written) <= 1e-9
        details = json.loads((tmp_path / f"ours_{split}" / "metrics_details.json").read_text())
        assert list(details) == list(ref_details)
        assert max_abs_diff(ref_details, details) <= 1e-9
        # Guard against a vacuous comparison: the mock detector must score in a real range.
        assert 0.05 < ours["mean_ap"] < 0.95 and 0.05 < ours["nd_score"] < 0.95


def test_cached_ground_truth_gives_identical_metrics(synth_databases, tmp_path, monkeypatch):
    db = synth_databases[1]
    results = db.write_submission(tmp_path / "r.json", "synth_val", seed=3)
    cache = tmp_path / "cache"
    fresh = evaluate_nuscenes(results, db.root, db.version, "synth_val", None, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1

    from sparse3d.data.nuscenes import tables

    def no_tables(*args, **kwargs):
        raise AssertionError("the GT cache should have been used")

    monkeypatch.setattr(tables.NuScenesTables, "__init__", no_tables)
    cached = evaluate_nuscenes(results, db.root, db.version, "synth_val", None, cache_dir=cache)
    assert max_abs_diff(fresh, cached) == 0.0
    with pytest.raises(AssertionError, match="GT cache should have been used"):
        evaluate_nuscenes(results, db.root, db.version, "synth_all", None, cache_dir=cache)  # another split: a miss
