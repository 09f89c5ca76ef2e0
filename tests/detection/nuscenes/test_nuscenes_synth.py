"""The synthetic nuScenes generator: loadable by the devkit, consistent, deterministic."""

import hashlib

import numpy as np
import pytest

from sparse3d.data.nuscenes.classes import (
    CLASS_ATTRIBUTES,
    DETECTION_NAMES,
    category_to_detection_name,
)
from sparse3d.detection.nuscenes import NuScenesFormatError
from sparse3d.detection.nuscenes.reader import NuScenesReader, NuScenesReaderConfig
from sparse3d.synthetic.lidar import SpinningLidarConfig
from sparse3d.synthetic.nuscenes import NuScenesSynthConfig, write_synthetic_nuscenes


def _digest(root):
    h = hashlib.md5()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_devkit_loads_it_and_counts_the_same_points(synth_databases):
    pytest.importorskip("nuscenes")
    from nuscenes import NuScenes
    from nuscenes.utils.data_classes import Box, LidarPointCloud
    from nuscenes.utils.geometry_utils import points_in_box
    from pyquaternion import Quaternion

    db = synth_databases[2]
    nusc = NuScenes(db.version, str(db.root), verbose=False)
    assert len(nusc.scene) == 3 and len(nusc.sample) == 12
    checked = 0
    for sample in nusc.sample:
        sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        pc = LidarPointCloud.from_file(nusc.get_sample_data_path(sd["token"]))
        for table in ("calibrated_sensor", "ego_pose"):
            record = nusc.get(table, sd[f"{table}_token"])
            pc.rotate(Quaternion(record["rotation"]).rotation_matrix)
            pc.translate(np.array(record["translation"]))
        for token in sample["anns"]:
            ann = nusc.get("sample_annotation", token)
            box = Box(ann["translation"], ann["size"], Quaternion(ann["rotation"]))
            assert points_in_box(box, pc.points[:3]).sum() == ann["num_lidar_pts"], token
            checked += ann["num_lidar_pts"] > 0
    assert checked > 100


def test_content_is_plausible(synth_databases):
    db = synth_databases[0]
    tables = db.tables()
    names = [category_to_detection_name(tables.category_name(a)) for a in tables.sample_annotation]
    assert set(DETECTION_NAMES) <= set(names)
    attribute_name = {a["token"]: a["name"] for a in tables.attribute}
    for ann, name in zip(tables.sample_annotation, names):
        assert len(ann["attribute_tokens"]) <= 1 and all(s > 0 for s in ann["size"])
        if name and ann["attribute_tokens"]:
            assert attribute_name[ann["attribute_tokens"][0]] in CLASS_ATTRIBUTES[name]
    # Objects move at constant velocity: every defined velocity of an instance is the same.
    by_instance = {}
    for ann, v in zip(tables.sample_annotation, tables.box_velocities(tables.sample_annotation)):
        if not np.isnan(v).any():
            by_instance.setdefault(ann["instance_token"], []).append(v)
    speeds = []
    for velocities in by_instance.values():
        np.testing.assert_allclose(velocities, np.broadcast_to(velocities[0], np.shape(velocities)), atol=1e-6)
        speeds.append(np.linalg.norm(velocities[0][:2]))
    assert max(speeds) > 3.0 and min(speeds) == 0.0
    # Sweeps belong to the following keyframe's sample and chain through prev / next.
    for sd in tables.sample_data:
        if not sd["is_key_frame"]:
            assert tables.get("sample_data", sd["next"])["sample_token"] == sd["sample_token"]
            assert sd["filename"].startswith("sweeps/LIDAR_TOP/")
        else:
            assert sd["filename"].startswith("samples/LIDAR_TOP/") and (db.root / sd["filename"]).is_file()


def test_cars_show_which_end_is_the_front(synth_databases):
    """A car's points: only its bonnet (low) in the front quarter, its cabin (full height)
    behind; so the heading, not just the axis, is observable, as on real cars."""
    db = synth_databases[0]
    reader = NuScenesReader(NuScenesReaderConfig(str(db.root), db.version, "synth_all", num_sweeps=1))
    car = DETECTION_NAMES.index("car")
    front_tops, middle_tops = [], []
    for sample in reader:
        for box in sample.gt_boxes[(sample.gt_labels == car) & (sample.gt_num_lidar_pts >= 20)]:
            x, y, z, length, width, height, yaw = box[:7]
            c, s = np.cos(yaw), np.sin(yaw)
            d = sample.points[:, :3] - np.array([x, y, z])
            along, across = d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c
            inside = (np.abs(along) < length / 2) & (np.abs(across) < width / 2) & (np.abs(d[:, 2]) < height / 2)
            up = (d[:, 2] + height / 2) / height  # height above the bottom face, fraction of the box
            front, middle = inside & (along > 0.3 * length), inside & (np.abs(along + 0.08 * length) < 0.2 * length)
            if front.any() and middle.any():
                front_tops.append(up[front].max())
                middle_tops.append(up[middle].max())
    assert len(front_tops) >= 10
    # Medians: a neighbour standing inside a box now and then lends it a high point.
    assert np.median(front_tops) < 0.52 and np.median(middle_tops) > 0.8


def test_deterministic_and_small_by_default(tmp_path):
    small = NuScenesSynthConfig(seed=4, num_scenes=1, samples_per_scene=2, objects_per_scene=12,
                                lidar=SpinningLidarConfig(azimuth_steps=180))
    a = _digest(write_synthetic_nuscenes(tmp_path / "a", small))
    assert a == _digest(write_synthetic_nuscenes(tmp_path / "b", small))
    other = NuScenesSynthConfig(seed=5, num_scenes=1, samples_per_scene=2, objects_per_scene=12,
                                lidar=SpinningLidarConfig(azimuth_steps=180))
    assert a != _digest(write_synthetic_nuscenes(tmp_path / "c", other))
    root = write_synthetic_nuscenes(tmp_path / "default")
    size_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20
    assert 1.0 < size_mb < 12.0


@pytest.mark.parametrize("kwargs, message", [
    ({"num_scenes": 0}, "num_scenes and samples_per_scene must be >= 1"),
    ({"sweeps_per_sample": 10}, "sweeps_per_sample must be in"),
    ({"objects_per_scene": 3}, "objects_per_scene must be >= 10"),
    ({"num_scenes": 2, "scene_names": ("scene-0001",)}, "scene_names has 1 names for 2 scenes"),
    ({"version": "a/b"}, "version must be a folder name"),
])
def test_bad_config(kwargs, message):
    with pytest.raises(NuScenesFormatError, match=message):
        NuScenesSynthConfig(**kwargs)
