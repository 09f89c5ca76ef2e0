"""The 13 JSON tables of a nuScenes v1.0 database, loaded on first use, checked and indexed.

Only the fields the reader and the evaluation use are required; a table's records are
checked when it is loaded (its required fields, and its token references, which loads
the tables they point to), so later code can index without guarding. A table that is
never used is never parsed: the evaluation reads ``sample_annotation`` only as columns
(:attr:`NuScenesTables.annotations`), decoded without a dict per record.

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

from sparse3d.data.nuscenes.annotations import (
    ANNOTATION_FIELDS,
    AnnotationRecord,
    AnnotationTable,
)
from sparse3d.data.nuscenes.errors import NuScenesFormatError
from sparse3d.io.json_fast import is_record, values
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
    "sample_annotation": ANNOTATION_FIELDS,
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
    """A nuScenes database (tables only; point clouds are read by the reader).

    Attributes:
        dataroot, version: where the tables come from.
        <table>: the list of records (dicts) of each of the 13 tables, in file order,
            parsed and checked on first access.
        annotations: ``sample_annotation`` as columns.
    """

    def __init__(self, dataroot: str | Path, version: str):
        """Finds ``<dataroot>/<version>/<table>.json`` for the 13 tables; each is parsed on first use.

        Raises:
            NuScenesFormatError: the folder or a table file is missing. A malformed table,
                a record that lacks a required field or a dangling token reference raises
                it when that table is first used.
        """
        self.dataroot, self.version = Path(dataroot), version
        self._folder = self.dataroot / version
        if not self._folder.is_dir():
            raise NuScenesFormatError(
                f"nuScenes tables: no folder {self._folder} (dataroot={dataroot}, version={version})")
        for name in REQUIRED_FIELDS:
            _table_path(self._folder, name)
        self._index: dict[str, dict[str, int]] = {}

    def __getattr__(self, name: str) -> list[dict]:
        # Called only for attributes not set yet: loads a table on first access.
        if name not in REQUIRED_FIELDS:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        path = _table_path(self._folder, name)
        records = read_json(path, f"nuScenes table {name!r}", NuScenesFormatError)
        _check_records(path, records, REQUIRED_FIELDS[name])
        index = {rec["token"]: i for i, rec in enumerate(records)}
        for table, field, target in _REFERENCES:
            if table == name:
                self._check_reference(table, field, values(records, field), target)
        self._index[name] = index
        setattr(self, name, records)
        return records

    def get(self, table: str, token: str) -> dict:
        """The record of ``table`` with this token (KeyError-free: raises NuScenesFormatError)."""
        try:
            return getattr(self, table)[self._index[table][token]]
        except KeyError:
            raise NuScenesFormatError(f"nuScenes table {table!r} has no token {token!r}") from None

    def has(self, table: str, token: str) -> bool:
        """Whether ``table`` holds ``token``."""
        return token in self._tokens(table)

    def keyframe_lidar(self, sample_token: str) -> dict:
        """The LIDAR_TOP keyframe sample_data record of a sample."""
        return self.sample_data[self._keyframe_lidar[sample_token]]

    def sample_annotations(self, sample_token: str) -> list[dict]:
        """The annotations of a sample, in table order (the devkit's ``sample['anns']`` order)."""
        return [self.sample_annotation[i] for i in self._sample_anns.get(sample_token, ())]

    def category_name(self, annotation: dict) -> str:
        """The category name of an annotation (through its instance)."""
        return self.instance_category[annotation["instance_token"]]

    def samples_of_scenes(self, scene_names: list[str]) -> list[str]:
        """Sample tokens whose scene is named in ``scene_names``, in sample-table order."""
        wanted = set(scene_names)
        scene_names_by_token = {scene["token"]: scene["name"] for scene in self.scene}
        return [s["token"] for s in self.sample if scene_names_by_token[s["scene_token"]] in wanted]

    def box_velocities(self, annotations: list[dict], max_time_diff: float = 1.5) -> np.ndarray:
        """Global-frame velocities of annotated boxes (:meth:`AnnotationTable.velocities`).

        Returns:
            float64 [K, 3] m/s.
        """
        table = self.annotations
        return table.velocities(table.rows([a["token"] for a in annotations]), max_time_diff)

    @cached_property
    def annotations(self) -> AnnotationTable:
        """``sample_annotation`` as columns, checked like the records.

        With the fast decoder, the file is decoded straight into typed records of the
        fields the columns need (no dict per record); the dict records are used when they
        are loaded already or when the file does not fit that schema (they word the error).
        """
        path = _table_path(self._folder, "sample_annotation")
        records = self.__dict__.get("sample_annotation")
        if records is None:
            records = read_json(path, "nuScenes table 'sample_annotation'", NuScenesFormatError,
                                schema=list[AnnotationRecord])
            if not (isinstance(records, list) and (not records or is_record(records[0]))):
                records = self.sample_annotation
        for table, field, target in _REFERENCES:
            if table == "sample_annotation":
                self._check_reference(table, field, values(records, field), target)
        sample_timestamp = {s["token"]: s["timestamp"] for s in self.sample}
        return AnnotationTable.from_records(records, sample_timestamp, path)

    @cached_property
    def instance_category(self) -> dict[str, str]:
        """instance token -> category name."""
        category_name = {c["token"]: c["name"] for c in self.category}
        return {inst["token"]: category_name[inst["category_token"]] for inst in self.instance}

    @cached_property
    def _keyframe_lidar(self) -> dict[str, int]:
        """sample token -> row of its LIDAR_TOP keyframe in ``sample_data``."""
        sensor_channel = {s["token"]: s["channel"] for s in self.sensor}
        calib_channel = {c["token"]: sensor_channel[c["sensor_token"]] for c in self.calibrated_sensor}
        keyframes = {}
        for i, sd in enumerate(self.sample_data):
            if sd["is_key_frame"] and calib_channel[sd["calibrated_sensor_token"]] == "LIDAR_TOP":
                keyframes[sd["sample_token"]] = i
        for sample in self.sample:
            if sample["token"] not in keyframes:
                raise NuScenesFormatError(f"{self._folder / 'sample_data.json'}: sample {sample['token']} "
                                          "has no LIDAR_TOP keyframe record")
        return keyframes

    @cached_property
    def _sample_anns(self) -> dict[str, list[int]]:
        """sample token -> rows of its annotations in ``sample_annotation``."""
        rows: dict[str, list[int]] = {}
        for i, ann in enumerate(self.sample_annotation):
            rows.setdefault(ann["sample_token"], []).append(i)
        return rows

    def _tokens(self, table: str) -> dict[str, int]:
        """token -> row of a table (loading it)."""
        getattr(self, table)
        return self._index[table]

    def _check_reference(self, table: str, field: str, tokens: list[str], target: str) -> None:
        """Raises if a token of ``table``'s ``field`` (one per record) is not a token of ``target``."""
        index = self._tokens(target)
        if all(map(index.__contains__, tokens)):
            return
        i = next(i for i, token in enumerate(tokens) if token not in index)
        raise NuScenesFormatError(f"{self._folder / (table + '.json')}: record {i} field {field!r} = {tokens[i]!r} "
                                  f"is not a token of table {target!r}")


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
    for name in sorted(REQUIRED_FIELDS):
        st = _table_path(folder, name).stat()
        stats.append((name, st.st_size, st.st_mtime_ns))
    if (folder / "splits.json").is_file():
        st = (folder / "splits.json").stat()
        stats.append(("splits", st.st_size, st.st_mtime_ns))
    key = json.dumps([str(folder.resolve()), stats])
    return hashlib.md5(key.encode()).hexdigest()[:16]


def _table_path(folder: Path, name: str) -> Path:
    path = folder / f"{name}.json"
    if not path.is_file():
        raise NuScenesFormatError(f"nuScenes table {name!r}: file not found: {path}")
    return path
