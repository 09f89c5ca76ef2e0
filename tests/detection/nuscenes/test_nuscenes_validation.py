"""Bad submissions, splits and databases give a NuScenesFormatError naming what is wrong."""

import json
import math
import re
import shutil

import numpy as np
import pytest

from sparse3d.data.nuscenes.tables import NuScenesTables
from sparse3d.detection.nuscenes import NuScenesFormatError
from sparse3d.detection.nuscenes.eval import evaluate_nuscenes
from sparse3d.detection.nuscenes.eval.compare import max_abs_diff
from sparse3d.detection.nuscenes.eval.ground_truth import load_split_ground_truth
from sparse3d.io import json_fast


@pytest.fixture(scope="module")
def base(synth_databases, tmp_path_factory):
    """(database, a valid synth_val submission as a dict) on the first generated database."""
    db = synth_databases[0]
    path = db.write_submission(tmp_path_factory.mktemp("valid") / "results.json", "synth_val", seed=0)
    return db, json.loads(path.read_text())


def _evaluate(db, submission, tmp_path, split="synth_val"):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(submission))
    return evaluate_nuscenes(path, db.root, db.version, split, tmp_path / "out")


def _first_box(submission):
    return next(boxes[0] for boxes in submission["results"].values() if boxes)


def test_valid_submission_passes(base, tmp_path):
    db, submission = base
    summary = _evaluate(db, submission, tmp_path)
    assert (tmp_path / "out" / "metrics_summary.json").is_file()
    assert 0 < summary["nd_score"] < 1


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("translation", [1.0, float("nan"), 0.0], "'translation' must be finite"),
        ("translation", [1.0, 2.0], "'translation' must be a list of 3 numbers"),
        ("size", [1.0, 0.0, 2.0], "'size' must be > 0"),
        ("size", [1.0, -2.0, 2.0], "'size' must be > 0"),
        ("rotation", [1.0, 0.0, "x", 0.0], "'rotation' must hold numbers"),
        ("detection_score", float("nan"), "'detection_score' must be a finite number"),
        ("detection_name", "tram", "unknown detection_name 'tram'"),
        ("attribute_name", "vehicle.flying", "unknown attribute_name 'vehicle.flying'"),
        ("sample_token", "0" * 32, "differs from the sample it is listed under"),
        ("velocity", [0.0, float("inf")], "'velocity' must be finite (NaN allowed)"),
    ],
)
def test_bad_box_field(base, tmp_path, field, value, message):
    db, submission = base
    submission = json.loads(json.dumps(submission))
    _first_box(submission)[field] = value
    with pytest.raises(NuScenesFormatError, match=".*".join(map(re.escape, ["results.json", "results[", message]))):
        _evaluate(db, submission, tmp_path)


def test_missing_box_field(base, tmp_path):
    db, submission = base
    submission = json.loads(json.dumps(submission))
    del _first_box(submission)["attribute_name"]
    with pytest.raises(NuScenesFormatError, match=r"missing field\(s\) \['attribute_name'\]"):
        _evaluate(db, submission, tmp_path)


def test_nan_velocity_is_allowed(base, tmp_path):
    db, submission = base
    submission = json.loads(json.dumps(submission))
    _first_box(submission)["velocity"] = [math.nan, math.nan]
    assert math.isfinite(_evaluate(db, submission, tmp_path)["nd_score"])


def test_too_many_boxes(base, tmp_path):
    db, submission = base
    submission = json.loads(json.dumps(submission))
    token = next(iter(submission["results"]))
    submission["results"][token] = [dict(_first_box(submission), sample_token=token)] * 501
    with pytest.raises(NuScenesFormatError, match=f"sample '{token}' has 501 boxes, more than the limit of 500"):
        _evaluate(db, submission, tmp_path)


def test_missing_sample(base, tmp_path):
    db, submission = base
    submission = json.loads(json.dumps(submission))
    token = next(iter(submission["results"]))
    del submission["results"][token]
    with pytest.raises(NuScenesFormatError, match=r"1 sample\(s\) of split 'synth_val' are missing"):
        _evaluate(db, submission, tmp_path)


def test_extra_sample_official_split_is_an_error(synth_databases, tmp_path):
    db = synth_databases[3]
    submission = json.loads(db.write_submission(tmp_path / "r.json", "mini_val", seed=0).read_text())
    submission["results"]["f" * 32] = []
    with pytest.raises(NuScenesFormatError, match=r"1 sample\(s\) in 'results' are not in split 'mini_val'"):
        _evaluate(db, submission, tmp_path, split="mini_val")


def test_extra_samples_of_a_custom_split_are_ignored(base, synth_databases, tmp_path):
    """As in devkit 1.2.0: one submission over the database scores on any custom split."""
    db, submission = base
    reference = _evaluate(db, submission, tmp_path)
    whole = json.loads(db.write_submission(tmp_path / "all.json", "synth_all", seed=5).read_text())
    whole["results"].update(submission["results"])
    assert len(whole["results"]) > len(submission["results"])
    again = _evaluate(db, whole, tmp_path)
    assert again["label_aps"] == reference["label_aps"] and again["nd_score"] == reference["nd_score"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    (json.dumps({"meta": {}}), "needs a 'results' object"),
    (json.dumps({"results": {}}), "needs a 'meta' object"),
    (json.dumps({"meta": {}, "results": {"a": {}}}), r"results\['a'\] must be a list"),
])
def test_malformed_submission_file(base, tmp_path, content, message):
    db, _ = base
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(NuScenesFormatError, match=message):
        evaluate_nuscenes(path, db.root, db.version, "synth_val", None)


def test_missing_submission_file(base, tmp_path):
    db, _ = base
    with pytest.raises(NuScenesFormatError, match="submission: file not found"):
        evaluate_nuscenes(tmp_path / "nope.json", db.root, db.version, "synth_val", None)


def test_bad_split(base, tmp_path):
    db, submission = base
    with pytest.raises(NuScenesFormatError, match="no split 'nosuch'.*synth_all"):
        _evaluate(db, submission, tmp_path, split="nosuch")
    with pytest.raises(NuScenesFormatError, match="split 'val' needs a version ending in 'trainval'"):
        _evaluate(db, submission, tmp_path, split="val")


@pytest.mark.parametrize("fast_json", [True, False], ids=["msgspec", "json"])
def test_broken_database(base, tmp_path, monkeypatch, fast_json):
    """A missing table fails at once; a bad record when its table is first used, as
    records (the reader) or as columns (the evaluation), with either decoder."""
    if fast_json:
        pytest.importorskip("msgspec")
    else:
        monkeypatch.setattr(json_fast, "msgspec", None)
    db, submission = base
    root = tmp_path / "db"
    shutil.copytree(db.root / db.version, root / db.version)
    (root / db.version / "ego_pose.json").unlink()
    with pytest.raises(NuScenesFormatError, match="nuScenes table 'ego_pose': file not found.*ego_pose.json"):
        NuScenesTables(root, db.version)
    shutil.copy(db.root / db.version / "ego_pose.json", root / db.version / "ego_pose.json")
    results = tmp_path / "results.json"
    results.write_text(json.dumps(submission))
    anns = json.loads((root / db.version / "sample_annotation.json").read_text())
    cases = [(3, "size", None, r"sample_annotation.json: record 3 .* lacks field\(s\) \['size'\]"),
             (5, "instance_token", "missing", "record 5 field 'instance_token' = 'missing' is not a token"),
             (7, "next", "missing", "record 7 field 'next' = 'missing' is not an annotation token")]
    for row, field, value, message in cases:
        broken = json.loads(json.dumps(anns))
        if value is None:
            del broken[row][field]
        else:
            broken[row][field] = value
        (root / db.version / "sample_annotation.json").write_text(json.dumps(broken))
        tables = NuScenesTables(root, db.version)  # nothing is parsed yet
        with pytest.raises(NuScenesFormatError, match=message):  # records first, as the reader does
            tables.box_velocities(tables.sample_annotation[:1])
        with pytest.raises(NuScenesFormatError, match=message):  # columns only
            NuScenesTables(root, db.version).annotations
        with pytest.raises(NuScenesFormatError, match=message):
            evaluate_nuscenes(results, root, db.version, "synth_val", None)


def test_typed_and_plain_decoding_agree(base, tmp_path, monkeypatch):
    """The msgspec fast path and the json-module path (the one switch in json_fast turned
    off) give the same boxes, ground truth and metrics, NaN velocities included; a NaN
    elsewhere (here in meta) falls back to the json module."""
    pytest.importorskip("msgspec")
    from sparse3d.detection.nuscenes import submission as submission_module

    db, submission = base
    submission = json.loads(json.dumps(submission))
    _first_box(submission)["velocity"] = [math.nan, 1.0]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(submission))
    typed = submission_module.load_submission(path)
    assert not isinstance(_first_box(typed), dict)
    tokens = list(typed["results"])
    typed_boxes = submission_module.submission_to_boxes(typed["results"], tokens)
    assert np.isnan(typed_boxes.velocity).any()
    summary_typed = evaluate_nuscenes(path, db.root, db.version, "synth_val", tmp_path / "typed")
    truth_typed = load_split_ground_truth(db.root, db.version, "synth_val")
    tables = NuScenesTables(db.root, db.version)
    tables.annotations
    assert "sample_annotation" not in vars(tables)  # decoded as typed records, no dicts
    with monkeypatch.context() as patch:
        patch.setattr(json_fast, "msgspec", None)
        tables = NuScenesTables(db.root, db.version)
        tables.annotations
        assert "sample_annotation" in vars(tables)
        plain = submission_module.load_submission(path)
        assert isinstance(_first_box(plain), dict)
        plain_boxes = submission_module.submission_to_boxes(plain["results"], tokens)
        summary_plain = evaluate_nuscenes(path, db.root, db.version, "synth_val", tmp_path / "plain")
        truth_plain = load_split_ground_truth(db.root, db.version, "synth_val")
    for field in typed_boxes.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(typed_boxes, field), getattr(plain_boxes, field))
        np.testing.assert_array_equal(getattr(truth_typed.boxes, field), getattr(truth_plain.boxes, field))
    assert truth_typed.sample_tokens == truth_plain.sample_tokens
    np.testing.assert_array_equal(truth_typed.ego_translation, truth_plain.ego_translation)
    for field in truth_typed.racks.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(truth_typed.racks, field), getattr(truth_plain.racks, field))
    assert max_abs_diff(summary_plain, summary_typed) == 0.0
    for name in ("metrics_summary.json", "metrics_details.json"):
        typed_file = json.loads((tmp_path / "typed" / name).read_text())
        plain_file = json.loads((tmp_path / "plain" / name).read_text())
        typed_file.pop("eval_time", None), plain_file.pop("eval_time", None)
        assert typed_file == plain_file

    submission["meta"]["note"] = math.nan
    path.write_text(json.dumps(submission))
    assert isinstance(_first_box(submission_module.load_submission(path)), dict)
    assert math.isnan(evaluate_nuscenes(path, db.root, db.version, "synth_val", None)["meta"]["note"])
