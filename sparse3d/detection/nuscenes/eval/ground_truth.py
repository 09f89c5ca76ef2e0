"""Ground-truth boxes, bike racks and ego poses of the evaluated samples."""

import io
from dataclasses import dataclass, fields
from itertools import repeat
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
    annotation without attribute gets ''. Rows are in the devkit's order: sample by
    sample, table order within a sample.

    Args:
        db: the database.
        sample_tokens: the evaluated samples, in evaluation order.

    Raises:
        NuScenesFormatError: an annotation has more than one attribute, or an unknown one.
    """
    ann = db.annotations
    rows, samples, categories = _split_annotations(db, sample_tokens)
    label_of = {name: i for i, name in enumerate(DETECTION_NAMES)}
    label_of_category = {c: label_of.get(category_to_detection_name(c), -1) for c in set(categories)}
    labels = np.fromiter(map(label_of_category.__getitem__, categories), np.int64, count=len(rows))
    keep = labels >= 0
    rows, samples, labels = rows[keep], samples[keep], labels[keep]
    if len(rows) == 0:
        return EvalBoxSet.empty()
    return EvalBoxSet(
        sample=samples, label=labels, translation=ann.translation[rows], size=ann.size[rows],
        rotation=ann.rotation[rows], velocity=ann.velocities(rows)[:, :2], attribute=_attributes(db, rows),
        score=np.full(len(rows), -1.0), num_pts=ann.num_lidar_pts[rows] + ann.num_radar_pts[rows],
    )


def load_bike_racks(db: NuScenesTables, sample_tokens: list[str]) -> BikeRacks:
    """The ``static_object.bicycle_rack`` annotations of the samples."""
    ann = db.annotations
    rows, samples, categories = _split_annotations(db, sample_tokens)
    rack = np.fromiter((c == BICYCLE_RACK for c in categories), bool, count=len(rows))
    rows = rows[rack]
    return BikeRacks(sample=samples[rack], translation=ann.translation[rows], size=ann.size[rows],
                     rotation=ann.rotation[rows])


def _split_annotations(db: NuScenesTables, sample_tokens: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The annotations of the samples in the devkit's order (sample by sample, table order
    within one: its ``sample['anns']``).

    Returns:
        rows: int64 [K] annotation rows; samples: int64 [K] position of each one's sample
        in ``sample_tokens``; categories: [K] category names.
    """
    ann = db.annotations
    position = {t: i for i, t in enumerate(sample_tokens)}
    sample_of_row = np.fromiter(map(position.get, ann.sample_token, repeat(-1)), np.int64, count=len(ann))
    rows = np.flatnonzero(sample_of_row >= 0)
    rows = rows[np.argsort(sample_of_row[rows], kind="stable")]
    category_of = db.instance_category
    categories = [category_of[ann.instance_token[r]] for r in rows.tolist()]
    return rows, sample_of_row[rows], categories


def _attributes(db: NuScenesTables, rows: np.ndarray) -> np.ndarray:
    """int64 [K] attribute index of each annotation row (-1 for none).

    Raises:
        NuScenesFormatError: an annotation has more than one attribute, or one whose token
            or name is unknown.
    """
    ann = db.annotations
    index = {a["token"]: ATTRIBUTE_NAMES.index(a["name"]) for a in db.attribute if a["name"] in ATTRIBUTE_NAMES}
    tokens = [ann.attribute_tokens[r] for r in rows.tolist()]
    # -1: no attribute; -2: an unknown one; -3: several.
    codes = np.fromiter((index.get(t[0], -2) if len(t) == 1 else -1 if not t else -3 for t in tokens), np.int64,
                        count=len(tokens))
    bad = np.flatnonzero(codes < -1)
    if len(bad):
        i = bad[0]
        token = ann.token[rows[i]]
        if codes[i] == -3:
            raise NuScenesFormatError(f"sample_annotation {token}: GT annotations must not have more than one "
                                      f"attribute, got {len(tokens[i])}")
        raise NuScenesFormatError(f"sample_annotation {token}: unknown attribute token {tokens[i][0]!r}")
    return codes


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
