"""Reads nuScenes LiDAR samples: multi-sweep point clouds and GT boxes in the keyframe
LiDAR frame, from an official v1.0 layout (real or synthetic), without the devkit.

The per-sample metadata (file paths, poses, sweep transforms, GT boxes) is gathered once
from the tables into :class:`SampleInfo` records and cached as JSON, so a second pass
skips the table loading.

Examples:
    >>> reader = NuScenesReader(NuScenesReaderConfig("/data/nuscenes", "v1.0-mini", "mini_val",
    ...                                               cache_dir="/tmp/nusc_cache"))
    >>> for sample in reader:
    ...     sample.points.shape, sample.gt_boxes.shape   # [P, 5], [M, 9]
"""

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sparse3d.data.nuscenes.classes import (
    DETECTION_NAMES,
    category_to_detection_name,
)
from sparse3d.data.nuscenes.errors import NuScenesFormatError
from sparse3d.data.nuscenes.splits import scenes_of_split
from sparse3d.data.nuscenes.tables import NuScenesTables, tables_fingerprint
from sparse3d.detection.boxes import global_boxes_to_lidar
from sparse3d.geometry.poses import Pose
from sparse3d.io.atomic import write_json_atomic
from sparse3d.io.read import read_json

_CACHE_FORMAT = 1


@dataclass(frozen=True)
class NuScenesReaderConfig:
    """Which samples to read and how."""

    dataroot: str
    """The nuScenes dataroot (holds ``<version>/``, ``samples/``, ``sweeps/``)."""
    version: str
    """Table folder, e.g. ``v1.0-trainval``, ``v1.0-mini`` or ``v1.0-synth``."""
    split: str | None
    """An official split (``train``, ``val``, ``mini_val``, ...), one from ``splits.json``,
    or None for every scene of the database."""
    num_sweeps: int = 10
    """LiDAR sweeps per sample, the keyframe included (fewer when the chain is shorter)."""
    sweep_min_distance: float = 1.0
    """Points of the older sweeps with |x| and |y| below this (metres, in the sweep's own
    frame) are dropped: returns from the ego vehicle itself (as the devkit and mmdet3d do)."""
    cache_dir: str | None = None
    """Folder for the info cache; None disables caching."""

    def __post_init__(self):
        if self.num_sweeps < 1:
            raise NuScenesFormatError(f"NuScenesReaderConfig.num_sweeps must be >= 1, got {self.num_sweeps}")
        if self.sweep_min_distance < 0:
            raise NuScenesFormatError(
                f"NuScenesReaderConfig.sweep_min_distance must be >= 0, got {self.sweep_min_distance}"
            )


@dataclass(frozen=True)
class SweepInfo:
    """One LiDAR sweep of a sample (the keyframe is the first)."""

    path: str
    """Point file relative to the dataroot (float32 [N, 5]: x, y, z, intensity, ring)."""
    time_lag: float
    """Keyframe time minus sweep time, seconds (0 for the keyframe)."""
    to_keyframe: list[list[float]]
    """[4, 4] transform from this sweep's LiDAR frame to the keyframe LiDAR frame."""


@dataclass(frozen=True)
class SampleInfo:
    """Everything needed to load one sample, without the tables."""

    token: str
    """Sample token."""
    scene_name: str
    """Name of the scene the sample belongs to."""
    timestamp: int
    """Keyframe time, microseconds."""
    lidar_to_ego: list[list[float]]
    """[4, 4] calibrated-sensor transform of the keyframe."""
    ego_to_global: list[list[float]]
    """[4, 4] ego pose of the keyframe."""
    sweeps: list[SweepInfo]
    """Keyframe first, then older sweeps."""
    gt_boxes: list[list[float]]
    """[M, 9] (x, y, z, dx, dy, dz, yaw, vx, vy) in the keyframe LiDAR frame; velocity NaN
    where the devkit's estimate is undefined."""
    gt_labels: list[int]
    """[M] indices into DETECTION_NAMES."""
    gt_attributes: list[str]
    """[M] attribute names ('' for none)."""
    gt_num_lidar_pts: list[int]
    """[M] LiDAR points in each box (annotation metadata)."""
    gt_num_radar_pts: list[int]
    """[M] radar points in each box."""
    gt_tokens: list[str]
    """[M] annotation tokens."""


@dataclass(frozen=True)
class LidarSample:
    """One sample ready for a detector."""

    token: str
    """Sample token."""
    points: np.ndarray
    """float32 [P, 5] (x, y, z, intensity, time_lag seconds) in the keyframe LiDAR frame."""
    gt_boxes: np.ndarray
    """float64 [M, 9] (x, y, z, dx, dy, dz, yaw, vx, vy), keyframe LiDAR frame."""
    gt_labels: np.ndarray
    """int64 [M] indices into DETECTION_NAMES."""
    gt_attributes: list[str]
    """[M] attribute names ('' for none)."""
    gt_num_lidar_pts: np.ndarray
    """int64 [M]."""
    gt_num_radar_pts: np.ndarray
    """int64 [M]."""
    lidar_to_ego: Pose
    """Keyframe calibrated sensor (LiDAR -> ego)."""
    ego_to_global: Pose
    """Keyframe ego pose (ego -> global)."""

    @property
    def lidar_to_global(self) -> Pose:
        """Keyframe LiDAR -> global (what submissions need)."""
        return self.ego_to_global.compose(self.lidar_to_ego)


class NuScenesReader:
    """Iterates the samples of a split (in sample-table order) as :class:`LidarSample`.

    Args:
        config: dataroot, version, split, sweeps, cache folder.
        tables: already loaded tables (loaded on demand if None and the cache misses).
    """

    def __init__(self, config: NuScenesReaderConfig, tables: NuScenesTables | None = None):
        self.config = config
        self.infos = self._load_or_build_infos(tables)

    def __len__(self) -> int:
        return len(self.infos)

    def __iter__(self) -> Iterator[LidarSample]:
        for i in range(len(self.infos)):
            yield self[i]

    def __getitem__(self, index: int) -> LidarSample:
        """Sample ``index`` of the split: its keyframe and sweeps read from their files.

        Raises:
            NuScenesFormatError: naming the sample token and the file, when a LiDAR file is
                missing, is not a whole number of 5-float records, or has a non-finite
                (NaN or infinite) x, y, z or intensity. A file with no record (an empty
                frame) is not an error.
        """
        info = self.infos[index]
        clouds = [self._sweep_points(info.token, sweep, is_keyframe=i == 0) for i, sweep in enumerate(info.sweeps)]
        boxes = np.array(info.gt_boxes, np.float64).reshape(-1, 9)
        return LidarSample(
            token=info.token, points=np.concatenate(clouds, axis=0), gt_boxes=boxes,
            gt_labels=np.array(info.gt_labels, np.int64), gt_attributes=list(info.gt_attributes),
            gt_num_lidar_pts=np.array(info.gt_num_lidar_pts, np.int64),
            gt_num_radar_pts=np.array(info.gt_num_radar_pts, np.int64),
            lidar_to_ego=_pose(info.lidar_to_ego), ego_to_global=_pose(info.ego_to_global),
        )

    def _sweep_points(self, token: str, sweep: SweepInfo, is_keyframe: bool) -> np.ndarray:
        """float32 [N, 5] (x, y, z, intensity, time lag) of one sweep file of sample ``token``,
        in the keyframe LiDAR frame."""
        path = Path(self.config.dataroot) / sweep.path
        what = "keyframe" if is_keyframe else "sweep"
        if not path.is_file():
            raise NuScenesFormatError(f"sample {token}: {what} LiDAR file not found: {path} "
                                      f"(sample_data filename {sweep.path!r})")
        raw = np.fromfile(path, dtype=np.float32)
        if raw.size % 5:
            raise NuScenesFormatError(f"sample {token}: {what} LiDAR file {path}: expected float32 records of 5 values "
                                      f"(x, y, z, intensity, ring), got {raw.size} values")
        raw = raw.reshape(-1, 5)
        bad = ~np.isfinite(raw[:, :4]).all(1)
        if bad.any():
            raise NuScenesFormatError(f"sample {token}: {what} LiDAR file {path}: {int(bad.sum())} of {len(raw)} points "
                                      f"have a NaN or infinite x, y, z or intensity (first at record "
                                      f"{int(np.argmax(bad))}); expected finite values")
        if not is_keyframe:
            r = self.config.sweep_min_distance
            raw = raw[~((np.abs(raw[:, 0]) < r) & (np.abs(raw[:, 1]) < r))]
        transform = np.array(sweep.to_keyframe, np.float64)
        xyz = raw[:, :3].astype(np.float64) @ transform[:3, :3].T + transform[:3, 3]
        lag = np.full((len(raw), 1), sweep.time_lag)
        return np.concatenate([xyz, raw[:, 3:4], lag], axis=1).astype(np.float32)

    def _load_or_build_infos(self, tables: NuScenesTables | None) -> list[SampleInfo]:
        cache = self._cache_path()
        if cache is not None and cache.is_file():
            content = read_json(cache, "nuScenes info cache", NuScenesFormatError)
            if content.get("format") == _CACHE_FORMAT:
                return [_info_from_dict(d) for d in content["infos"]]
        tables = tables or NuScenesTables(self.config.dataroot, self.config.version)
        infos = build_infos(tables, self.config.split, self.config.num_sweeps)
        if cache is not None:
            write_json_atomic(cache, {"format": _CACHE_FORMAT, "infos": [asdict(i) for i in infos]}, indent=None)
        return infos

    def _cache_path(self) -> Path | None:
        """The cache file, named by a fingerprint of the config and the tables' sizes and
        modification times, so editing a table invalidates it."""
        if self.config.cache_dir is None:
            return None
        key = json.dumps([tables_fingerprint(self.config.dataroot, self.config.version), self.config.split,
                          self.config.num_sweeps, _CACHE_FORMAT])
        digest = hashlib.md5(key.encode()).hexdigest()[:16]
        split = self.config.split or "all-scenes"
        return Path(self.config.cache_dir) / f"nuscenes_infos_{self.config.version}_{split}_{digest}.json"


def build_infos(tables: NuScenesTables, split: str | None, num_sweeps: int) -> list[SampleInfo]:
    """:class:`SampleInfo` of every sample of a split (None: of the database), in
    sample-table order."""
    if split is None:
        scene_names = [scene["name"] for scene in tables.scene]
    else:
        scene_names = scenes_of_split(tables.dataroot, tables.version, split)
    scene_name_of = {scene["token"]: scene["name"] for scene in tables.scene}
    infos = []
    for token in tables.samples_of_scenes(scene_names):
        sample = tables.get("sample", token)
        key_sd = tables.keyframe_lidar(token)
        lidar_to_ego = _record_pose(tables.get("calibrated_sensor", key_sd["calibrated_sensor_token"]))
        ego_to_global = _record_pose(tables.get("ego_pose", key_sd["ego_pose_token"]))
        lidar_to_global = ego_to_global.compose(lidar_to_ego)
        infos.append(SampleInfo(
            token=token, scene_name=scene_name_of[sample["scene_token"]], timestamp=int(key_sd["timestamp"]),
            lidar_to_ego=lidar_to_ego.matrix().tolist(), ego_to_global=ego_to_global.matrix().tolist(),
            sweeps=_sweeps(tables, key_sd, lidar_to_global, num_sweeps),
            **_gt_fields(tables, token, lidar_to_global),
        ))
    return infos


def _sweeps(tables: NuScenesTables, key_sd: dict, key_lidar_to_global: Pose, num_sweeps: int) -> list[SweepInfo]:
    """The keyframe and up to ``num_sweeps - 1`` previous sweeps along the ``prev`` chain."""
    to_key = key_lidar_to_global.inverse()
    sweeps, sd = [], key_sd
    while True:
        sweep_to_global = _record_pose(tables.get("ego_pose", sd["ego_pose_token"])).compose(
            _record_pose(tables.get("calibrated_sensor", sd["calibrated_sensor_token"])))
        sweeps.append(SweepInfo(path=sd["filename"], time_lag=1e-6 * key_sd["timestamp"] - 1e-6 * sd["timestamp"],
                                to_keyframe=to_key.compose(sweep_to_global).matrix().tolist()))
        if len(sweeps) == num_sweeps or not sd["prev"]:
            return sweeps
        sd = tables.get("sample_data", sd["prev"])


def _gt_fields(tables: NuScenesTables, token: str, lidar_to_global: Pose) -> dict:
    anns = [a for a in tables.sample_annotations(token) if category_to_detection_name(tables.category_name(a))]
    attribute_name = {a["token"]: a["name"] for a in tables.attribute}
    if anns:
        boxes = global_boxes_to_lidar(
            np.array([a["translation"] for a in anns]), np.array([a["size"] for a in anns]),
            np.array([a["rotation"] for a in anns]), tables.box_velocities(anns)[:, :2], lidar_to_global)
    else:
        boxes = np.zeros((0, 9))
    return {
        "gt_boxes": boxes.tolist(),
        "gt_labels": [DETECTION_NAMES.index(category_to_detection_name(tables.category_name(a))) for a in anns],
        "gt_attributes": [attribute_name[a["attribute_tokens"][0]] if a["attribute_tokens"] else "" for a in anns],
        "gt_num_lidar_pts": [int(a["num_lidar_pts"]) for a in anns],
        "gt_num_radar_pts": [int(a["num_radar_pts"]) for a in anns],
        "gt_tokens": [a["token"] for a in anns],
    }


def _record_pose(record: dict) -> Pose:
    return Pose.from_quaternion(record["translation"], record["rotation"])


def _pose(matrix: list[list[float]]) -> Pose:
    m = np.array(matrix, np.float64)
    return Pose(m[:3, :3], m[:3, 3])


def _info_from_dict(d: dict) -> SampleInfo:
    return SampleInfo(**{**d, "sweeps": [SweepInfo(**s) for s in d["sweeps"]]})
