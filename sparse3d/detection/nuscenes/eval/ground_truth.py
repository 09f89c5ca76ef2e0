"""Ground-truth boxes, bike racks and ego poses of the evaluated samples."""

import io
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from sparse3d.data.nuscenes.classes import (
    ATTRIBUTE_NAMES,
    BICYCLE_RACK,
    DETECTION_NAMES,
    category_to_detection_name,
)
from sparse3d.data.nuscenes.errors import NuScenesFormatError
from sparse3d.data.nuscenes.splits import scenes_of_split
from sparse3d.data.nuscenes.tables import NuScenesTables, tables_fingerprint
from sparse3d.detection.nuscenes.box_set import EvalBoxSet
from sparse3d.io.atomic import write_bytes_atomic


@dataclass(frozen=True)
class BikeRacks:
    """The bicycle-rack annotations of the evaluated samples."""

    sample: np.ndarray
    """int64 [K] sample index of each rack."""
    translation: np.ndarray
    """float64 [K, 3] rack centre, global frame."""
    size: np.ndarray
    """float64 [K, 3] (w, l, h)."""
    rotation: np.ndarray
    """float64 [K, 4] quaternion (w, x, y, z)."""


def load_ground_truth(db: NuScenesTables, sample_tokens: list[str]) -> EvalBoxSet:
    """GT boxes of the samples, mapped to the detection classes (other categories dropped).

    Velocities come from the instance chains, ``num_pts`` = LiDAR + radar points, and an
    annotation without attribute gets ''.

    Args:
        db: the database.
        sample_tokens: the evaluated samples, in evaluation order.

    Raises:
        NuScenesFormatError: an annotation has more than one attribute.
    """
    label_of = {name: i for i, name in enumerate(DETECTION_NAMES)}
    attribute_index = {a["token"]: ATTRIBUTE_NAMES.index(a["name"]) if a["name"] in ATTRIBUTE_NAMES else -2
                       for a in db.attribute}
    anns, samples, labels, attributes = [], [], [], []
    for s, token in enumerate(sample_tokens):
        for ann in db.sample_annotations(token):
            name = category_to_detection_name(db.category_name(ann))
            if name is None:
                continue
            attrs = ann["attribute_tokens"]
            if len(attrs) > 1:
                raise NuScenesFormatError(f"sample_annotation {ann['token']}: GT annotations must not have more "
                                          f"than one attribute, got {len(attrs)}")
            attribute = attribute_index.get(attrs[0], -2) if attrs else -1
            if attribute == -2:
                raise NuScenesFormatError(f"sample_annotation {ann['token']}: unknown attribute token {attrs[0]!r}")
            anns.append(ann)
            samples.append(s)
            labels.append(label_of[name])
            attributes.append(attribute)
    if not anns:
        return EvalBoxSet.empty()
    return EvalBoxSet(
        sample=np.array(samples, np.int64), label=np.array(labels, np.int64),
        translation=np.array([a["translation"] for a in anns], np.float64),
        size=np.array([a["size"] for a in anns], np.float64),
        rotation=np.array([a["rotation"] for a in anns], np.float64),
        velocity=db.box_velocities(anns)[:, :2],
        attribute=np.array(attributes, np.int64), score=np.full(len(anns), -1.0),
        num_pts=np.array([a["num_lidar_pts"] + a["num_radar_pts"] for a in anns], np.int64),
    )


def load_bike_racks(db: NuScenesTables, sample_tokens: list[str]) -> BikeRacks:
    """The ``static_object.bicycle_rack`` annotations of the samples."""
    racks, samples = [], []
    for s, token in enumerate(sample_tokens):
        for ann in db.sample_annotations(token):
            if db.category_name(ann) == BICYCLE_RACK:
                racks.append(ann)
                samples.append(s)
    return BikeRacks(
        sample=np.array(samples, np.int64),
        translation=np.array([a["translation"] for a in racks], np.float64).reshape(-1, 3),
        size=np.array([a["size"] for a in racks], np.float64).reshape(-1, 3),
        rotation=np.array([a["rotation"] for a in racks], np.float64).reshape(-1, 4),
    )


def ego_translations(db: NuScenesTables, sample_tokens: list[str]) -> np.ndarray:
    """float64 [S, 3] ego position of each sample's LIDAR_TOP keyframe (global frame)."""
    poses = [db.get("ego_pose", db.keyframe_lidar(t)["ego_pose_token"]) for t in sample_tokens]
    return np.array([p["translation"] for p in poses], np.float64).reshape(-1, 3)


@dataclass(frozen=True)
class SplitGroundTruth:
    """What the evaluation needs from the database for one split."""

    sample_tokens: list[str]
    """The split's samples, in sample-table order."""
    boxes: EvalBoxSet
    """Unfiltered GT boxes of those samples."""
    ego_translation: np.ndarray
    """float64 [S, 3] per-sample ego position."""
    racks: BikeRacks
    """Bike racks of those samples."""


def load_split_ground_truth(
    dataroot: str | Path, version: str, split: str, cache_dir: str | Path | None = None,
    db: NuScenesTables | None = None,
) -> SplitGroundTruth:
    """The GT of a split, from the tables or from a cache.

    Args:
        dataroot, version, split: the database and split.
        cache_dir: where to keep a ``.npz`` of the result, keyed by the tables' sizes and
            modification times, so a second evaluation skips parsing the tables; None
            disables it.
        db: already loaded tables (used on a cache miss).
    """
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"nuscenes_gt_{version}_{split}_{tables_fingerprint(dataroot, version)}.npz"
        if cache.is_file():
            return _read_cache(cache)
    db = db or NuScenesTables(dataroot, version)
    tokens = db.samples_of_scenes(scenes_of_split(dataroot, version, split))
    if not tokens:
        raise NuScenesFormatError(f"split {split!r} has no samples in {Path(dataroot) / version}")
    result = SplitGroundTruth(tokens, load_ground_truth(db, tokens), ego_translations(db, tokens),
                              load_bike_racks(db, tokens))
    if cache is not None:
        _write_cache(cache, result)
    return result


def _write_cache(path: Path, gt: SplitGroundTruth) -> None:
    arrays = {f"box_{f.name}": getattr(gt.boxes, f.name) for f in fields(EvalBoxSet)}
    arrays.update({f"rack_{f.name}": getattr(gt.racks, f.name) for f in fields(BikeRacks)})
    buffer = io.BytesIO()
    np.savez(buffer, sample_tokens=np.array(gt.sample_tokens, dtype="U"), ego_translation=gt.ego_translation,
             **arrays)
    write_bytes_atomic(path, buffer.getvalue())


def _read_cache(path: Path) -> SplitGroundTruth:
    with np.load(path, allow_pickle=False) as data:
        boxes = EvalBoxSet(**{f.name: data[f"box_{f.name}"] for f in fields(EvalBoxSet)})
        racks = BikeRacks(**{f.name: data[f"rack_{f.name}"] for f in fields(BikeRacks)})
        return SplitGroundTruth(data["sample_tokens"].tolist(), boxes, data["ego_translation"], racks)
