"""The 13 JSON tables of a nuScenes v1.0 database, loaded, checked and indexed.

Only the fields the reader and the evaluation use are required; each record is checked
once at load time, so later code can index without guarding.

Examples:
    >>> db = NuScenesTables("/data/nuscenes", "v1.0-mini")
    >>> sample = db.sample[0]
    >>> db.keyframe_lidar(sample["token"])["filename"]
"""

import hashlib
import json
from functools import cached_property
from pathlib import Path

import numpy as np

from sparse3d.data.nuscenes.errors import NuScenesFormatError
from sparse3d.io.read import read_json

REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "attribute": ("token", "name"),
    "calibrated_sensor": ("token", "sensor_token", "translation", "rotation"),
    "category": ("token", "name"),
    "ego_pose": ("token", "translation", "rotation", "timestamp"),
    "instance": ("token", "category_token"),
    "log": ("token",),
    "map": ("token", "log_tokens", "filename"),
    "sample": ("token", "timestamp", "scene_token", "prev", "next"),
    "sample_annotation": ("token", "sample_token", "instance_token", "attribute_tokens", "translation", "size",
                          "rotation", "prev", "next", "num_lidar_pts", "num_radar_pts"),
    "sample_data": ("token", "sample_token", "ego_pose_token", "calibrated_sensor_token", "timestamp",
                    "is_key_frame", "filename", "prev", "next"),
    "scene": ("token", "name", "log_token", "first_sample_token", "last_sample_token"),
    "sensor": ("token", "channel", "modality"),
    "visibility": ("token",),
}
"""Fields each table's records must have."""

_REFERENCES = (
    ("sample_annotation", "sample_token", "sample"), ("sample_annotation", "instance_token", "instance"),
    ("instance", "category_token", "category"), ("sample", "scene_token", "scene"),
    ("sample_data", "sample_token", "sample"), ("sample_data", "ego_pose_token", "ego_pose"),
    ("sample_data", "calibrated_sensor_token", "calibrated_sensor"), ("calibrated_sensor", "sensor_token", "sensor"),
)


class NuScenesTables:
    """A loaded nuScenes database (tables only; point clouds are read by the reader).

    Attributes:
        dataroot, version: where the tables came from.
        <table>: the list of records of each of the 13 tables, in file order.
    """

    def __init__(self, dataroot: str | Path, version: str):
        """Loads ``<dataroot>/<version>/<table>.json`` for the 13 tables.

        Raises:
            NuScenesFormatError: a table is missing or malformed, a record lacks a required
                field, or a token reference is dangling.
        """
        self.dataroot, self.version = Path(dataroot), version
        folder = self.dataroot / version
        if not folder.is_dir():
            raise NuScenesFormatError(f"nuScenes tables: no folder {folder} (dataroot={dataroot}, version={version})")
        self._index: dict[str, dict[str, int]] = {}
        for name, fields in REQUIRED_FIELDS.items():
            records = read_json(folder / f"{name}.json", f"nuScenes table {name!r}", NuScenesFormatError)
            _check_records(folder / f"{name}.json", records, fields)
            setattr(self, name, records)
            self._index[name] = {rec["token"]: i for i, rec in enumerate(records)}
        for table, field, target in _REFERENCES:
            index = self._index[target]
            for i, rec in enumerate(getattr(self, table)):
                if rec[field] not in index:
                    raise NuScenesFormatError(
                        f"{folder / (table + '.json')}: record {i} field {field!r} = {rec[field]!r} "
                        f"is not a token of table {target!r}"
                    )
        self._build_reverse_index(folder)
        for i, ann in enumerate(self.sample_annotation):
            for field in ("prev", "next"):
                if ann[field] and ann[field] not in self._index["sample_annotation"]:
                    raise NuScenesFormatError(
                        f"{folder / 'sample_annotation.json'}: record {i} field {field!r} = {ann[field]!r} "
                        "is not an annotation token"
                    )

    def get(self, table: str, token: str) -> dict:
        """The record of ``table`` with this token (KeyError-free: raises NuScenesFormatError)."""
        try:
            return getattr(self, table)[self._index[table][token]]
        except KeyError:
            raise NuScenesFormatError(f"nuScenes table {table!r} has no token {token!r}") from None

    def has(self, table: str, token: str) -> bool:
        """Whether ``table`` holds ``token``."""
        return token in self._index[table]

    def keyframe_lidar(self, sample_token: str) -> dict:
        """The LIDAR_TOP keyframe sample_data record of a sample."""
        return self.sample_data[self._keyframe_lidar[sample_token]]

    def sample_annotations(self, sample_token: str) -> list[dict]:
        """The annotations of a sample, in table order (the devkit's ``sample['anns']`` order)."""
        return [self.sample_annotation[i] for i in self._sample_anns.get(sample_token, ())]

    def category_name(self, annotation: dict) -> str:
        """The category name of an annotation (through its instance)."""
        return self._instance_category[annotation["instance_token"]]

    def samples_of_scenes(self, scene_names: list[str]) -> list[str]:
        """Sample tokens whose scene is named in ``scene_names``, in sample-table order."""
        wanted = set(scene_names)
        scene_names_by_token = {scene["token"]: scene["name"] for scene in self.scene}
        return [s["token"] for s in self.sample if scene_names_by_token[s["scene_token"]] in wanted]

    def box_velocities(self, annotations: list[dict], max_time_diff: float = 1.5) -> np.ndarray:
        """Global-frame velocities of annotated boxes from their neighbours in the instance chain.

        A centred difference over ``prev`` / ``next`` (one-sided at the ends) with the
        sample timestamps; NaN for a lone annotation or a gap over ``max_time_diff``
        seconds (doubled when centred). Same float64 arithmetic as the devkit's
        ``box_velocity``, vectorised.

        Returns:
            float64 [K, 3] m/s.
        """
        k = len(annotations)
        if k == 0:
            return np.zeros((0, 3))
        ann_index = self._index["sample_annotation"]
        rows = np.array([ann_index[a["token"]] for a in annotations])
        prev = np.array([ann_index[a["prev"]] if a["prev"] else -1 for a in annotations])
        nxt = np.array([ann_index[a["next"]] if a["next"] else -1 for a in annotations])
        first, last = np.where(prev >= 0, prev, rows), np.where(nxt >= 0, nxt, rows)
        translations, timestamps = self._annotation_translations, self._annotation_times
        pos_diff = translations[last] - translations[first]
        time_diff = 1e-6 * timestamps[last] - 1e-6 * timestamps[first]
        limit = np.where((prev >= 0) & (nxt >= 0), 2 * max_time_diff, max_time_diff)
        invalid = ((prev < 0) & (nxt < 0)) | (time_diff > limit)
        with np.errstate(divide="ignore", invalid="ignore"):
            velocity = pos_diff / time_diff[:, None]
        velocity[invalid] = np.nan
        return velocity

    @cached_property
    def _annotation_translations(self) -> np.ndarray:
        """float64 [A, 3] centre of every annotation."""
        return np.array([a["translation"] for a in self.sample_annotation], np.float64).reshape(-1, 3)

    @cached_property
    def _annotation_times(self) -> np.ndarray:
        """int64 [A] timestamp (us) of each annotation's sample."""
        sample_ts = {s["token"]: s["timestamp"] for s in self.sample}
        return np.array([sample_ts[a["sample_token"]] for a in self.sample_annotation], np.int64)

    def _build_reverse_index(self, folder: Path) -> None:
        sensor_channel = {s["token"]: s["channel"] for s in self.sensor}
        calib_channel = {c["token"]: sensor_channel[c["sensor_token"]] for c in self.calibrated_sensor}
        self._keyframe_lidar: dict[str, int] = {}
        for i, sd in enumerate(self.sample_data):
            if sd["is_key_frame"] and calib_channel[sd["calibrated_sensor_token"]] == "LIDAR_TOP":
                self._keyframe_lidar[sd["sample_token"]] = i
        for sample in self.sample:
            if sample["token"] not in self._keyframe_lidar:
                raise NuScenesFormatError(
                    f"{folder / 'sample_data.json'}: sample {sample['token']} has no LIDAR_TOP keyframe record"
                )
        self._sample_anns: dict[str, list[int]] = {}
        for i, ann in enumerate(self.sample_annotation):
            self._sample_anns.setdefault(ann["sample_token"], []).append(i)
        category_name = {c["token"]: c["name"] for c in self.category}
        self._instance_category = {inst["token"]: category_name[inst["category_token"]] for inst in self.instance}


def _check_records(path: Path, records, fields: tuple[str, ...]) -> None:
    if not isinstance(records, list):
        raise NuScenesFormatError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise NuScenesFormatError(f"{path}: record {i} is not an object")
        missing = [f for f in fields if f not in rec]
        if missing:
            raise NuScenesFormatError(f"{path}: record {i} (token {rec.get('token')!r}) lacks field(s) {missing}")


def tables_fingerprint(dataroot: str | Path, version: str) -> str:
    """A 16-hex digest of the table files' names, sizes and modification times (and of
    ``splits.json``), without reading them: caches derived from the tables use it as a key."""
    folder = Path(dataroot) / version
    stats = []
    for name in [*sorted(REQUIRED_FIELDS), "splits"]:
        path = folder / f"{name}.json"
        if path.is_file():
            st = path.stat()
            stats.append((name, st.st_size, st.st_mtime_ns))
        elif name != "splits":
            raise NuScenesFormatError(f"nuScenes table {name!r}: file not found: {path}")
    key = json.dumps([str(folder.resolve()), stats])
    return hashlib.md5(key.encode()).hexdigest()[:16]
