"""A trained detector predicts and scores any nuScenes v1.0-format database: 0 or 9 sweeps
between keyframes, empty frames, a database written by hand (not by our generator), and
`sparse3d-eval run=RUN data=OTHER version=... split=...`; bad LiDAR files and unknown
versions or splits are one clear error, never a crash deep inside."""

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from clirun import run_cli

from sparse3d.data.nuscenes.errors import NuScenesFormatError
from sparse3d.detection.batch import DetectionSample, collate
from sparse3d.detection.dataset import DetectionEvalData
from sparse3d.engine.config import ConfigError, update_config
from sparse3d.engine.distributed import World
from sparse3d.engine.method import EvalSource
from sparse3d.engine.registry import discover_methods
from sparse3d.engine.run import load_trained_method
from sparse3d.engine.trainer import Trainer
from sparse3d.geometry.poses import Pose
from sparse3d.synthetic.lidar import SpinningLidarConfig
from sparse3d.synthetic.nuscenes import NuScenesSynthConfig, write_synthetic_nuscenes

LIDAR = SpinningLidarConfig(num_beams=8, azimuth_steps=180, max_range=30.0)
NUM_SWEEPS = 10  # the model reads up to 10 sweeps per sample; the worlds have fewer or as many
TINY = {
    "datamanager": {"num_sweeps": NUM_SWEEPS, "point_cloud_range": [-25.6, -25.6, -5.0, 25.6, 25.6, 3.0],
                    "cbgs": False, "gt_sampling": {"enabled": False}},
    "training": {"batch_size": 2, "eval_batch_size": 2},
    "model": {"voxel_size": [0.4, 0.4, 0.25], "encoder_channels": [4, 4, 8, 8],
              "bev": {"layer_nums": [1, 1], "num_filters": [8, 8], "num_upsample_filters": [8, 8]},
              "head": {"shared_channels": 4}},
}


def synth_world(root: Path, seed: int, sweeps: int) -> Path:
    config = NuScenesSynthConfig(seed=seed, num_scenes=2, samples_per_scene=3, sweeps_per_sample=sweeps,
                                 objects_per_scene=10, lidar=LIDAR)
    return write_synthetic_nuscenes(root, config)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A 2-step tiny centerpoint run on a world with one sweep between keyframes."""
    world = synth_world(tmp_path_factory.mktemp("train_world"), seed=3, sweeps=1)
    out = tmp_path_factory.mktemp("runs") / "centerpoint"
    config = update_config(discover_methods()["centerpoint"].default_config("cpu"), TINY, "test")
    config.data, config.output = world, out
    config.trainer.max_steps, config.trainer.eval_every, config.trainer.progress = 2, 0, False
    Trainer(config, "centerpoint", out, World()).train()
    return out


@pytest.fixture(scope="module")
def method(run):
    return load_trained_method(run, torch.device("cpu"))[1]


def split_tokens(root: Path, version: str, scene_names: list[str]) -> list[str]:
    scenes = {s["token"] for s in json.loads((root / version / "scene.json").read_text()) if s["name"] in scene_names}
    return [s["token"] for s in json.loads((root / version / "sample.json").read_text()) if s["scene_token"] in scenes]


def keyframe_file(root: Path, version: str, sample_token: str) -> Path:
    records = json.loads((root / version / "sample_data.json").read_text())
    return root / next(r["filename"] for r in records if r["sample_token"] == sample_token and r["is_key_frame"])


@pytest.mark.parametrize("sweeps", [0, 9])
def test_inference_and_evaluation_with_0_and_9_sweeps_between_keyframes(method, tmp_path, sweeps):
    world = synth_world(tmp_path / "world", seed=5, sweeps=sweeps)
    data = method.config.datamanager
    # Configured for 10 sweeps, the model reads what the prev chain holds: with no sweep
    # between keyframes, the k-th sample of a scene reaches back k keyframes.
    lags = [len(np.unique(s.points[:, 4])) for s in map(DetectionEvalData(data, world, "synth_all").sample, range(6))]
    assert lags == ([1, 2, 3] * 2 if sweeps == 0 else [NUM_SWEEPS] * 6)
    report = method.get_eval_report(2, EvalSource(world, split="synth_all", out=tmp_path / "out"))
    assert report["source"] == {"data": str(world), "version": "v1.0-synth", "split": "synth_all",
                                "out": str(tmp_path / "out")}
    assert 0 <= report["mAP"] <= 1 and 0 <= report["NDS"] <= 1
    submission = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(submission["results"]) == 6
    assert json.loads((tmp_path / "out" / "metrics_summary.json").read_text())["nd_score"] == report["NDS"]


def test_empty_frames_get_an_empty_prediction(method, tmp_path):
    world = synth_world(tmp_path / "world", seed=6, sweeps=0)
    first_of_scene = [split_tokens(world, "v1.0-synth", [f"scene-{i:04d}"])[0] for i in (1, 2)]
    assert len(set(first_of_scene)) == 2  # so neither reaches back to another keyframe
    keyframe_file(world, "v1.0-synth", first_of_scene[0]).write_bytes(b"")  # no point at all
    above = np.zeros((50, 5), np.float32)
    above[:, 0], above[:, 2] = np.linspace(-10, 10, 50), 10.0  # inside in x and y, above the range's z
    above.tofile(keyframe_file(world, "v1.0-synth", first_of_scene[1]))
    report = method.get_eval_report(2, EvalSource(world, split="synth_all", out=tmp_path / "out"))
    results = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    assert len(results) == 6 and 0 <= report["NDS"] <= 1
    assert [results[t] for t in first_of_scene] == [[], []]
    assert sum(len(boxes) for boxes in results.values()) > 0  # the other frames are predicted as usual
    # Without the check the head would decode its biases on the empty BEV map into boxes.
    eval_data = DetectionEvalData(method.config.datamanager, world, "synth_all")
    batch = collate([eval_data.sample(0)])
    with torch.no_grad():
        raw = method.model.detections(method.model(batch.points, 1, batch.batch_index))[0]
    assert len(raw.boxes) > 0 and len(method.predict(batch)[0].boxes) == 0


def test_every_stage_runs_on_zero_points(method):
    model, pose = method.model, Pose(np.eye(3), np.zeros(3))
    empty = DetectionSample("t", np.zeros((0, 5), np.float32), np.zeros((0, 9)), np.zeros(0, np.int64), pose)
    full = DetectionSample("u", np.array([[1.0, 2.0, 0.0, 0.5, 0.0]], np.float32), np.zeros((0, 9)),
                           np.zeros(0, np.int64), pose)
    for samples in ([empty], [empty, empty], [full, empty]):
        batch = collate(samples)
        with torch.no_grad():
            voxels = model.vfe(batch.points, batch.batch_size, batch.batch_index)
            assert voxels.feats.shape[0] == (1 if samples[0] is full else 0)
            bev = model.encode(voxels)
            assert bev.shape[0] == len(samples) and torch.isfinite(bev).all()
            preds = model.dense_head(model.backbone_2d(bev))
            assert all(torch.isfinite(t).all() for group in preds for t in group.values())
        found = method.predict(batch)
        for sample, d in zip(samples, found):
            if sample is empty:
                assert d.boxes.shape == (0, 9) and d.scores.shape == (0,) and d.labels.shape == (0,)
                assert d.boxes.dtype == torch.float32 and d.labels.dtype == torch.int64


def test_nan_points_and_a_missing_file_name_the_sample_and_the_file(method, tmp_path):
    world = synth_world(tmp_path / "world", seed=7, sweeps=0)
    token = split_tokens(world, "v1.0-synth", ["scene-0001"])[1]
    path = keyframe_file(world, "v1.0-synth", token)
    points = np.fromfile(path, np.float32).reshape(-1, 5)
    points[3, 1] = np.nan
    points.tofile(path)
    with pytest.raises(NuScenesFormatError, match=rf"sample {token}: keyframe LiDAR file {path}: 1 of "
                                                  rf"{len(points)} points have a NaN"):
        method.get_eval_report(2, EvalSource(world, split="synth_all", out=tmp_path / "out"))
    path.unlink()
    with pytest.raises(NuScenesFormatError, match=rf"sample {token}: keyframe LiDAR file not found: {path}"):
        method.evaluate(tmp_path / "out", world, split="synth_all")


def test_unknown_version_or_split_lists_what_exists(method, run):
    world = Path(method.config.data)
    with pytest.raises(NuScenesFormatError, match=r"no table folder 'v1.0-mini' .*versions there: \['v1.0-synth'\]"):
        method.get_eval_report(2, EvalSource(world, version="v1.0-mini"))
    with pytest.raises(NuScenesFormatError, match=r"no split 'nope'.*splits of .*v1.0-synth: "
                                                  r"\['synth_train', 'synth_val', 'synth_all'\]"):
        method.get_eval_report(2, EvalSource(split="nope"))
    with pytest.raises(NuScenesFormatError, match=r"split 'val' needs a version ending in 'trainval'.*splits of"):
        method.get_eval_report(2, EvalSource(split="val"))
    assert not (run / "eval_v1.0-synth_nope").exists()


def test_a_run_copied_without_its_data_is_evaluated_on_other_data(run, tmp_path):
    copied = tmp_path / "run"
    shutil.copytree(run, copied)
    saved = yaml.safe_load((copied / "config.yaml").read_text())
    saved["data"], saved["origin"] = str(tmp_path / "gone"), {"cwd": str(tmp_path), "run_dir": str(tmp_path / "old")}
    (copied / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(ConfigError, match="'data' .*gone not found"):
        load_trained_method(copied, torch.device("cpu"))
    world = synth_world(tmp_path / "world", seed=9, sweeps=0)
    _, method, step = load_trained_method(copied, torch.device("cpu"), data=world)
    report = method.get_eval_report(step, EvalSource(world))
    assert report["source"] == {"data": str(world), "version": "v1.0-synth", "split": "synth_val",
                                "out": str(copied / "eval_v1.0-synth_synth_val")}
    assert (copied / "eval_v1.0-synth_synth_val" / "metrics_summary.json").is_file()


# A database written by hand, as another tool would: the 13 tables with the fields the
# format requires, v1.0-mini with its official scene names (so no splits.json), LiDAR files
# of very different sizes written with numpy, 0 to 6 boxes per sample, no sweeps.

def _quaternion_z(yaw: float) -> list[float]:
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


def _rotation_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def write_handmade_database(root: Path) -> dict[str, list[str]]:
    """Writes ``root/v1.0-mini`` and ``root/samples``; returns the sample tokens per scene name."""
    rng = np.random.default_rng(11)
    version = root / "v1.0-mini"
    version.mkdir(parents=True)
    (root / "samples" / "LIDAR_TOP").mkdir(parents=True)
    calib_t, calib_yaw = np.array([0.94, 0.0, 1.84]), 0.02
    tables = {name: [] for name in ("attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map",
                                    "sample", "sample_annotation", "sample_data", "scene", "sensor", "visibility")}
    tables["sensor"] = [{"token": "sensor-lidar", "channel": "LIDAR_TOP", "modality": "lidar"}]
    tables["calibrated_sensor"] = [{"token": "calib-lidar", "sensor_token": "sensor-lidar",
                                    "translation": calib_t.tolist(), "rotation": _quaternion_z(calib_yaw)}]
    tables["log"] = [{"token": "log-1"}]
    tables["map"] = [{"token": "map-1", "log_tokens": ["log-1"], "filename": "maps/none.png"}]
    tables["visibility"] = [{"token": "4"}]
    tables["attribute"] = [{"token": "attr-parked", "name": "vehicle.parked"},
                           {"token": "attr-standing", "name": "pedestrian.standing"}]
    categories = {"car": ("vehicle.car", "attr-parked", (1.9, 4.5, 1.6)),
                  "pedestrian": ("human.pedestrian.adult", "attr-standing", (0.7, 0.7, 1.8)),
                  "traffic_cone": ("movable_object.trafficcone", None, (0.4, 0.4, 1.0))}
    tables["category"] = [{"token": f"cat-{k}", "name": v[0]} for k, v in categories.items()]
    # (scene name, per sample the boxes: class and LiDAR-frame x, y, yaw; points on the ground)
    scenes = {
        "scene-0103": [([], 40), ([("car", 8.0, 3.0, 0.3)], 2000)],
        "scene-0916": [([("car", 10.0, -4.0, 1.2), ("car", -12.0, 6.0, -0.4), ("pedestrian", 5.0, 5.0, 0.0),
                         ("pedestrian", 6.0, -7.0, 2.0), ("traffic_cone", -4.0, -3.0, 0.0),
                         ("traffic_cone", 3.0, 9.0, 0.0)], 15000)],
        "scene-0061": [([("car", 7.0, 0.0, 0.0)], 500)],  # mini_train: not in the evaluated split
    }
    tokens: dict[str, list[str]] = {}
    time = 1_533_201_470_000_000
    for s, (scene_name, samples) in enumerate(scenes.items()):
        names = [f"{scene_name}-sample-{k}" for k in range(len(samples))]
        tokens[scene_name] = names
        tables["scene"].append({"token": f"{scene_name}-token", "name": scene_name, "log_token": "log-1",
                                "first_sample_token": names[0], "last_sample_token": names[-1]})
        for k, (boxes, ground) in enumerate(samples):
            time += 500_000
            ego_t, ego_yaw = np.array([300.0 + 40 * s + 5 * k, 900.0 - 2 * k, 0.0]), 0.5 + 0.1 * s
            sd = f"{names[k]}-lidar"
            tables["sample"].append({"token": names[k], "timestamp": time, "scene_token": f"{scene_name}-token",
                                     "prev": names[k - 1] if k else "", "next": names[k + 1] if k + 1 < len(names) else ""})
            tables["ego_pose"].append({"token": f"{sd}-pose", "translation": ego_t.tolist(),
                                       "rotation": _quaternion_z(ego_yaw), "timestamp": time})
            filename = f"samples/LIDAR_TOP/{sd}.pcd.bin"
            tables["sample_data"].append({
                "token": sd, "sample_token": names[k], "ego_pose_token": f"{sd}-pose",
                "calibrated_sensor_token": "calib-lidar", "timestamp": time, "is_key_frame": True,
                "filename": filename, "prev": f"{names[k - 1]}-lidar" if k else "",
                "next": f"{names[k + 1]}-lidar" if k + 1 < len(names) else ""})
            cloud = [np.column_stack([rng.uniform(-20, 20, (ground, 2)), np.full(ground, -1.8)])]
            for b, (cls, x, y, yaw) in enumerate(boxes):
                _, attribute, (w, l, h) = categories[cls]
                inside = rng.uniform(-0.45, 0.45, (300, 3)) * [l, w, h]
                cloud.append(inside @ _rotation_z(yaw).T + [x, y, -1.8 + h / 2])
                lidar_to_global = _rotation_z(ego_yaw) @ _rotation_z(calib_yaw)
                centre = lidar_to_global @ [x, y, -1.8 + h / 2] + _rotation_z(ego_yaw) @ calib_t + ego_t
                ann = f"{names[k]}-ann-{b}"
                tables["instance"].append({"token": f"{ann}-instance", "category_token": f"cat-{cls}"})
                tables["sample_annotation"].append({
                    "token": ann, "sample_token": names[k], "instance_token": f"{ann}-instance",
                    "attribute_tokens": [attribute] if attribute else [], "translation": centre.tolist(),
                    "size": [w, l, h], "rotation": _quaternion_z(ego_yaw + calib_yaw + yaw), "prev": "", "next": "",
                    "num_lidar_pts": 300, "num_radar_pts": 0})
            xyz = np.concatenate(cloud)
            points = np.column_stack([xyz, rng.uniform(0, 100, len(xyz)), rng.integers(0, 32, len(xyz))])
            points.astype(np.float32).tofile(root / filename)
    for name, records in tables.items():
        (version / f"{name}.json").write_text(json.dumps(records, indent=1))
    return tokens


def test_a_handmade_database_reads_as_written(method, tmp_path):
    write_handmade_database(tmp_path / "handmade")
    data = dataclasses.replace(method.config.datamanager, version="v1.0-mini")
    samples = [*map(DetectionEvalData(data, tmp_path / "handmade", "mini_val").sample, range(3))]
    assert [len(s.points) for s in samples] == [40, 40 + 2000 + 300, 15000 + 6 * 300]  # the previous keyframe too
    np.testing.assert_allclose(samples[1].gt_boxes[:, [0, 1, 2, 6]], [[8.0, 3.0, -1.0, 0.3]], atol=1e-9)
    np.testing.assert_allclose(samples[2].gt_boxes[:, [0, 1, 6]], [[10.0, -4.0, 1.2], [-12.0, 6.0, -0.4],
                                                                  [5.0, 5.0, 0.0], [6.0, -7.0, 2.0],
                                                                  [-4.0, -3.0, 0.0], [3.0, 9.0, 0.0]], atol=1e-9)


def test_command_line_on_a_database_made_by_other_software(run, tmp_path):
    tokens = write_handmade_database(tmp_path / "handmade")
    own = (run / "eval.json").read_bytes() if (run / "eval.json").exists() else None
    result = run_cli("sparse3d-eval", f"run={run}", f"data={tmp_path / 'handmade'}", "version=v1.0-mini",
                     "split=mini_val", env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    out = run / "eval_v1.0-mini_mini_val"
    assert f"wrote {out / 'eval.json'}" in result.stdout
    report = json.loads((out / "eval.json").read_text())
    assert report["method"] == "centerpoint" and report["source"]["split"] == "mini_val"
    assert report["source"]["data"] == str(tmp_path / "handmade")
    results = json.loads((out / "results.json").read_text())["results"]
    assert sorted(results) == sorted(tokens["scene-0103"] + tokens["scene-0916"])
    summary = json.loads((out / "metrics_summary.json").read_text())
    assert summary["nd_score"] == report["NDS"] and 0 <= report["NDS"] <= 1
    assert ((run / "eval.json").read_bytes() if (run / "eval.json").exists() else None) == own


def test_command_line_errors_are_one_line(run, tmp_path):
    world = synth_world(tmp_path / "world", seed=8, sweeps=0)
    shutil.rmtree(world / "samples")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = run_cli("sparse3d-eval", f"run={run}", f"data={world}", "split=synth_val", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert re.fullmatch(r"sparse3d-eval: error: sample \S+: keyframe LiDAR file not found: \S+\.pcd\.bin .*\n",
                        result.stderr), result.stderr
    result = run_cli("sparse3d-eval", f"run={run}", f"data={world}", "split=nope", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    assert "no split 'nope'" in result.stderr and "['synth_train', 'synth_val', 'synth_all']" in result.stderr
