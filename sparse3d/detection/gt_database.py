"""The GT database for copy-paste augmentation ("GT sampling", SECOND / OpenPCDet's
``DataBaseSampler``): every GT object of the training split with the LiDAR points inside
its box, and the sampler that pastes objects from other scenes into a training scene.

Building (:func:`build_gt_database`) reads every sample of a split once (all its sweeps)
and stores, per class, the points inside each box translated by the box centre (not
rotated: an object is pasted back at its recorded place), its box, point count and sample.
The folder (default ``DATAROOT/sparse3d_gtdb_<version>_<split>/``) holds::

    index.json               format, fingerprint, settings, classes and counts, sample tokens
    <class>_points.npy       float32 [P_c, F] the class's object points, concatenated
    <class>_objects.npz      boxes float64 [N_c, 9], offsets int64 [N_c + 1] into the points,
                             sample_index int64 [N_c] (into the sample tokens), gt_index int64 [N_c]

``index.json`` is written last, so a folder without it is an unfinished build. Its
fingerprint covers the tables (their sizes and modification times), the split, the
sweeps and the format: :func:`load_gt_database` refuses a database built from other ones.

Sampling (:func:`sample_gt`) follows the reference's semantics (see ``GtSamplerConfig``).

Examples:
    >>> reader_config = NuScenesReaderConfig("/data/nuscenes", "v1.0-trainval", "train")
    >>> database = build_gt_database(reader_config)              # once
    >>> database = load_gt_database(gt_database_dir(reader_config), reader_config)
    >>> points, boxes, labels = sample_gt(points, boxes, labels, database, GtSamplerConfig(), rng)
"""

import hashlib
import io
import json
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from sparse3d.core.bev_nms import bev_iou
from sparse3d.data.nuscenes.classes import DETECTION_NAMES
from sparse3d.data.nuscenes.tables import tables_fingerprint
from sparse3d.detection.nuscenes.reader import NuScenesReader, NuScenesReaderConfig
from sparse3d.geometry.poses import points_in_boxes
from sparse3d.geometry.rotations import yaw_matrices
from sparse3d.io.atomic import write_atomic, write_bytes_atomic, write_json_atomic
from sparse3d.io.read import read_json

GTDB_FORMAT = 1
"""Version of the on-disk layout; a database of another format is refused (rebuild it)."""
_REFERENCE_ORDER = ("car", "truck", "construction_vehicle", "bus", "trailer",
                    "barrier", "motorcycle", "bicycle", "pedestrian", "traffic_cone")
_REFERENCE_GROUPS = (2, 3, 7, 4, 6, 2, 6, 6, 2, 2)


class GtDatabaseError(ValueError):
    """A missing, unfinished, malformed or stale GT database; the message names the folder
    or file and says how to rebuild it."""


@dataclass(frozen=True)
class GtSamplerConfig:
    """GT sampling (copy-paste) settings; defaults are OpenPCDet's nuScenes CenterPoint
    ``gt_sampling`` entry.

    Per-class values are ``"class:value"`` strings, as in the reference config; the order
    of ``sample_groups`` is the order in which classes are sampled (earlier classes claim
    free space first).
    """

    enabled: bool = True
    """Paste objects from the database into training scenes."""
    min_points: tuple[str, ...] = tuple(f"{name}:5" for name in _REFERENCE_ORDER)
    """``class:n``: only database objects with at least n points are pasted (PREPARE
    filter_by_min_points); a class not listed has no minimum."""
    sample_groups: tuple[str, ...] = tuple(f"{n}:{g}" for n, g in zip(_REFERENCE_ORDER, _REFERENCE_GROUPS))
    """``class:n``: the target number of objects of the class per scene (SAMPLE_GROUPS);
    classes not listed are never pasted."""
    limit_whole_scene: bool = True
    """Count the scene's own objects of a class towards its target (LIMIT_WHOLE_SCENE), so
    ``n - existing`` are pasted; otherwise n are pasted on top."""

    def __post_init__(self):
        for name in ("min_points", "sample_groups"):
            _parse_class_values(getattr(self, name), f"GtSamplerConfig.{name}")

    @property
    def groups(self) -> dict[str, int]:
        """{class name: target count}, in sampling order."""
        return _parse_class_values(self.sample_groups, "GtSamplerConfig.sample_groups")

    @property
    def min_points_of(self) -> dict[str, int]:
        """{class name: minimum points}."""
        return _parse_class_values(self.min_points, "GtSamplerConfig.min_points")


def _parse_class_values(entries: tuple[str, ...], where: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for entry in entries:
        name, sep, value = str(entry).partition(":")
        if not sep or name not in DETECTION_NAMES or not value.strip().isdigit():
            raise ValueError(f"{where}: expected 'class:count' entries with a class of {list(DETECTION_NAMES)} and a "
                             f"count >= 0, got {entry!r}")
        if name in out:
            raise ValueError(f"{where}: class {name!r} is given twice")
        out[name] = int(value)
    return out


def gt_database_dir(reader_config: NuScenesReaderConfig) -> Path:
    """The default database folder of a split: ``DATAROOT/sparse3d_gtdb_<version>_<split>``."""
    return Path(reader_config.dataroot) / f"sparse3d_gtdb_{reader_config.version}_{reader_config.split}"


def gt_database_fingerprint(reader_config: NuScenesReaderConfig) -> str:
    """16-hex digest of what the database content depends on: the tables (names, sizes,
    modification times), the split, the sweep settings and the format."""
    key = json.dumps([tables_fingerprint(reader_config.dataroot, reader_config.version), reader_config.split,
                      reader_config.num_sweeps, reader_config.sweep_min_distance, GTDB_FORMAT])
    return hashlib.md5(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class GtObjects:
    """The database objects of one class."""

    boxes: np.ndarray
    """float64 [N, 9] (x, y, z, dx, dy, dz, yaw, vx, vy) where the object was recorded
    (LiDAR frame of its sample); velocity NaN where undefined."""
    offsets: np.ndarray
    """int64 [N + 1]: object i's points are rows ``offsets[i]:offsets[i+1]`` of the class's points."""
    sample_index: np.ndarray
    """int64 [N] index into :attr:`GtDatabase.sample_tokens`."""
    gt_index: np.ndarray
    """int64 [N] index of the box among its sample's GT boxes (reader order)."""

    @property
    def num_points(self) -> np.ndarray:
        """int64 [N] points inside each object's box."""
        return np.diff(self.offsets)


class GtDatabase:
    """A built GT database (read lazily: a class's files are opened on first use, its
    points memory-mapped).

    Args:
        folder: the database folder (holds ``index.json``).
        index: the parsed ``index.json``.
    """

    def __init__(self, folder: Path, index: dict):
        self.folder = Path(folder)
        self.index = index
        self._pools: dict[tuple[str, int], np.ndarray] = {}

    @property
    def fingerprint(self) -> str:
        """The fingerprint recorded at build time."""
        return self.index["fingerprint"]

    @property
    def counts(self) -> dict[str, int]:
        """{class name: number of objects}, every detection class."""
        return dict(self.index["counts"])

    @property
    def num_point_features(self) -> int:
        """F, the columns of the stored points."""
        return int(self.index["num_point_features"])

    @property
    def sample_tokens(self) -> list[str]:
        """Tokens of the samples the objects come from."""
        return self.index["sample_tokens"]

    def objects(self, name: str) -> GtObjects:
        """The objects of class ``name`` (one of DETECTION_NAMES)."""
        return self._objects[name]

    def points(self, name: str, i: int) -> np.ndarray:
        """float32 [n, F] points of object ``i`` of class ``name``, relative to its box centre
        (xyz minus the centre; other features as recorded)."""
        offsets = self.objects(name).offsets
        return np.array(self._points[name][offsets[i]: offsets[i + 1]], np.float32)

    def pool(self, name: str, min_points: int) -> np.ndarray:
        """int64 [K] indices of the class's objects with at least ``min_points`` points."""
        key = (name, min_points)
        if key not in self._pools:
            self._pools[key] = np.flatnonzero(self.objects(name).num_points >= min_points)
        return self._pools[key]

    @cached_property
    def _objects(self) -> dict[str, GtObjects]:
        out = {}
        for name in DETECTION_NAMES:
            path = self.folder / f"{name}_objects.npz"
            try:
                with np.load(path) as data:
                    out[name] = GtObjects(data["boxes"], data["offsets"], data["sample_index"], data["gt_index"])
            except (OSError, KeyError, ValueError) as err:
                raise GtDatabaseError(f"GT database {self.folder}: cannot read {path.name} ({err}); "
                                      f"rebuild it with `sparse3d-data nuscenes-gtdb`") from err
            if out[name].boxes.shape != (self.counts[name], 9):
                raise GtDatabaseError(f"GT database {path}: boxes must be [{self.counts[name]}, 9] as index.json "
                                      f"says, got {list(out[name].boxes.shape)}")
        return out

    @cached_property
    def _points(self) -> dict[str, np.ndarray]:
        out = {}
        for name in DETECTION_NAMES:
            path = self.folder / f"{name}_points.npy"
            try:
                out[name] = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as err:
                raise GtDatabaseError(f"GT database {self.folder}: cannot read {path.name} ({err}); "
                                      f"rebuild it with `sparse3d-data nuscenes-gtdb`") from err
            expected = (int(self._objects[name].offsets[-1]), self.num_point_features)
            if out[name].shape != expected:
                raise GtDatabaseError(f"GT database {path}: points must be {list(expected)} as the offsets say, "
                                      f"got {list(out[name].shape)}")
        return out


def build_gt_database(reader_config: NuScenesReaderConfig, folder: str | Path | None = None) -> GtDatabase:
    """Builds the GT database of a split and writes it (atomically, ``index.json`` last).

    Every GT box the reader yields is stored, whatever its point count (the sampler's
    ``min_points`` filters at sampling time). A point inside several boxes is stored with
    each of them. Object points are streamed to scratch files as they are found, so memory
    does not grow with the split (the full nuScenes train split holds gigabytes of them).

    Args:
        reader_config: dataroot, version, split and sweeps of the samples to read.
        folder: where to write; default :func:`gt_database_dir`.

    Returns:
        The database, loaded.
    """
    folder = Path(folder) if folder is not None else gt_database_dir(reader_config)
    fingerprint = gt_database_fingerprint(reader_config)
    reader = NuScenesReader(reader_config)
    if len(reader) == 0:
        raise GtDatabaseError(f"split {reader_config.split!r} of {reader_config.dataroot}/{reader_config.version} has "
                              f"no samples: nothing to build a GT database from")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.json").unlink(missing_ok=True)  # a rebuild stopped half-way must not look finished
    columns = {name: {"boxes": [], "counts": [], "sample_index": [], "gt_index": []} for name in DETECTION_NAMES}
    writers = {name: _PointsWriter(folder / f"{name}_points.npy") for name in DETECTION_NAMES}
    try:
        for sample_index, sample in enumerate(reader):
            num_features = sample.points.shape[1]
            members = box_members(sample.points, sample.gt_boxes)
            for j, (box, label, rows) in enumerate(zip(sample.gt_boxes, sample.gt_labels, members)):
                name = DETECTION_NAMES[label]
                object_points = sample.points[rows]
                object_points[:, :3] -= box[:3].astype(np.float32)
                writers[name].append(object_points)
                for key, value in (("boxes", box), ("counts", len(rows)), ("sample_index", sample_index),
                                   ("gt_index", j)):
                    columns[name][key].append(value)
        for name, column in columns.items():
            writers[name].finish(num_features)
            _write_npz(folder / f"{name}_objects.npz",
                       boxes=np.array(column["boxes"], np.float64).reshape(-1, 9),
                       offsets=np.concatenate([[0], np.cumsum(column["counts"], dtype=np.int64)]).astype(np.int64),
                       sample_index=np.array(column["sample_index"], np.int64),
                       gt_index=np.array(column["gt_index"], np.int64))
    finally:
        for writer in writers.values():
            writer.discard()
    index = {
        "format": GTDB_FORMAT, "fingerprint": fingerprint, "dataroot": str(reader_config.dataroot),
        "version": reader_config.version, "split": reader_config.split, "num_sweeps": reader_config.num_sweeps,
        "sweep_min_distance": reader_config.sweep_min_distance, "num_point_features": num_features,
        "counts": {name: len(column["boxes"]) for name, column in columns.items()},
        "sample_tokens": [info.token for info in reader.infos],
    }
    write_json_atomic(folder / "index.json", index, indent=None)
    return GtDatabase(folder, index)


class _PointsWriter:
    """Appends one class's object points (float32 rows) to a scratch file beside ``path``;
    :meth:`finish` writes them as the .npy ``path`` (atomically)."""

    def __init__(self, path: Path):
        self.path = path
        self.scratch = path.with_name(f".{path.name}.parts")
        self.file = open(self.scratch, "wb")
        self.rows = 0

    def append(self, points: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(points, np.float32).tobytes())
        self.rows += len(points)

    def finish(self, num_features: int) -> None:
        self.file.close()
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                  "shape": (self.rows, num_features)}

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as out, open(self.scratch, "rb") as parts:
                np.lib.format.write_array_header_1_0(out, header)
                shutil.copyfileobj(parts, out)

        write_atomic(self.path, write)

    def discard(self) -> None:
        """Closes and removes the scratch file (after :meth:`finish`, or on failure)."""
        self.file.close()
        self.scratch.unlink(missing_ok=True)


def load_gt_database(folder: str | Path, reader_config: NuScenesReaderConfig | None = None) -> GtDatabase:
    """Opens a built GT database.

    Args:
        folder: the database folder.
        reader_config: when given, the database must have been built from these tables,
            split and sweep settings (same fingerprint).

    Raises:
        GtDatabaseError: the folder or its ``index.json`` is missing (never built, or the
            build did not finish), the format is another one, or the fingerprint differs
            (stale: the tables or settings changed since the build); the message says how
            to rebuild.
    """
    folder = Path(folder)
    path = folder / "index.json"
    rebuild = _rebuild_command(folder, reader_config)
    if not path.is_file():
        raise GtDatabaseError(f"no GT database at {folder} (missing {path.name}); build it with {rebuild}")
    index = read_json(path, "GT database index", GtDatabaseError)
    if not isinstance(index, dict) or index.get("format") != GTDB_FORMAT:
        found = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise GtDatabaseError(f"{path}: expected GT database format {GTDB_FORMAT}, got {found!r}; rebuild it with "
                              f"{rebuild}")
    missing = [key for key in ("fingerprint", "num_point_features", "counts", "sample_tokens") if key not in index]
    if missing or set(index["counts"]) != set(DETECTION_NAMES):
        raise GtDatabaseError(f"{path}: malformed index (missing {missing or 'per-class counts'}); rebuild it with "
                              f"{rebuild}")
    if reader_config is not None:
        expected = gt_database_fingerprint(reader_config)
        if index["fingerprint"] != expected:
            raise GtDatabaseError(
                f"{path}: stale GT database: built from {index.get('version')}/{index.get('split')} with "
                f"num_sweeps={index.get('num_sweeps')} and tables fingerprint {index['fingerprint']}, but "
                f"{reader_config.version}/{reader_config.split} with num_sweeps={reader_config.num_sweeps} "
                f"and the current tables give {expected}; rebuild it with {rebuild}"
            )
    return GtDatabase(folder, index)


def box_members(points: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
    """Rows of the points inside each (yaw-only) box, bounds inclusive.

    Each box tests only the points within its bounding circle in x and y first, so memory
    stays O(P) per box instead of the O(M P) of one :func:`points_in_boxes` call.

    Args:
        points: float [P, F >= 3], same frame as the boxes.
        boxes: float [M, 7+] (x, y, z, dx, dy, dz, yaw, ...).

    Returns:
        M int64 arrays of point rows, ascending.
    """
    xy = points[:, :2].astype(np.float64)
    out = []
    for box in np.asarray(boxes, np.float64):
        radius = 0.5 * float(np.hypot(box[3], box[4]))
        near = np.flatnonzero((np.abs(xy[:, 0] - box[0]) <= radius) & (np.abs(xy[:, 1] - box[1]) <= radius))
        inside = points_in_boxes(points[near, :3], box[None, :3], yaw_matrices(box[6:7]), box[None, 3:6])[0]
        out.append(near[inside])
    return out


def sample_gt(
    points: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    database: GtDatabase,
    config: GtSamplerConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pastes database objects into a scene (OpenPCDet ``DataBaseSampler.__call__``).

    For each class of ``config.sample_groups``, in order:

    1. n = target count, less the scene's boxes of that class if ``limit_whole_scene``;
       nothing when n <= 0.
    2. n candidates are drawn without replacement from the class's objects with at least
       its ``min_points`` points (all of them if fewer). The reference walks a pointer
       through a shuffled list that persists across scenes (reshuffled on wrap); here each
       scene draws from ``rng`` alone, so a sample is a function of its own generator,
       whatever was sampled before it (same marginal distribution per scene).
    3. A candidate is kept only if its rotated BEV IoU is 0 with every box already in the
       scene (the scene's own and those accepted for earlier classes) and with every other
       candidate of this class (so two colliding candidates are both dropped).

    Then the scene points inside any accepted box are removed and the accepted objects'
    points, moved to their box centres, are put in front of the scene points.

    Args:
        points: float [P, F] scene points (x, y, z first), F = the database's features.
        boxes: float [M, 9] scene GT boxes (LiDAR frame); NaN velocities are fine.
        labels: int64 [M] indices into DETECTION_NAMES.
        database: the training split's database.
        config: which classes, how many, minimum points.
        rng: numpy random generator (consumed).

    Returns:
        points [P', F] (pasted objects first, input dtype), boxes [M + K, 9] (scene boxes,
        then pasted ones, velocities as recorded, NaN kept), labels int64 [M + K].
    """
    points, boxes, labels = np.asarray(points), np.asarray(boxes), np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != database.num_point_features:
        raise ValueError(f"sample_gt: points must be [P, {database.num_point_features}] like the GT database "
                         f"{database.folder}, got {list(points.shape)}")
    if boxes.ndim != 2 or boxes.shape[1] != 9 or labels.shape != (len(boxes),):
        raise ValueError(f"sample_gt: boxes must be [M, 9] and labels [M], got {list(boxes.shape)} and "
                         f"{list(labels.shape)}")
    min_points = config.min_points_of
    existing = boxes[:, :7].astype(np.float32)  # the reference compares in float32
    accepted: list[tuple[str, int]] = []
    accepted_boxes = [np.zeros((0, 9))]
    for name, target in config.groups.items():
        count = target - int((labels == DETECTION_NAMES.index(name)).sum()) if config.limit_whole_scene else target
        pool = database.pool(name, min_points.get(name, 0))
        if count <= 0 or len(pool) == 0:
            continue
        chosen = rng.choice(pool, min(count, len(pool)), replace=False)
        candidates = database.objects(name).boxes[chosen]
        keep = _no_overlap(candidates[:, :7].astype(np.float32), existing)
        accepted += [(name, int(i)) for i in chosen[keep]]
        accepted_boxes.append(candidates[keep])
        existing = np.concatenate([existing, candidates[keep, :7].astype(np.float32)])
    if not accepted:
        return points.copy(), boxes.copy(), labels.astype(np.int64)
    new_boxes = np.concatenate(accepted_boxes)
    inside = np.concatenate(box_members(points, new_boxes))
    kept = np.delete(points, inside, axis=0)
    pasted = []
    for (name, i), box in zip(accepted, new_boxes):
        object_points = database.points(name, i).astype(points.dtype)
        object_points[:, :3] += box[:3].astype(points.dtype)
        pasted.append(object_points)
    new_labels = np.array([DETECTION_NAMES.index(name) for name, _ in accepted], np.int64)
    return (np.concatenate([*pasted, kept]), np.concatenate([boxes, new_boxes]),
            np.concatenate([labels.astype(np.int64), new_labels]))


def _no_overlap(candidates: np.ndarray, existing: np.ndarray) -> np.ndarray:
    """bool [N]: candidates whose BEV IoU is 0 with all existing boxes and all other candidates.

    Args:
        candidates: float32 [N, 7]; existing: float32 [E, 7].
    """
    others = bev_iou(torch.from_numpy(candidates), torch.from_numpy(candidates)).numpy()
    np.fill_diagonal(others, 0.0)
    clash = others.max(1) > 0
    if len(existing):
        clash |= bev_iou(torch.from_numpy(candidates), torch.from_numpy(existing)).numpy().max(1) > 0
    return ~clash


def _rebuild_command(folder: Path, reader_config: NuScenesReaderConfig | None) -> str:
    if reader_config is None:
        return "`sparse3d-data nuscenes-gtdb DATAROOT version=... split=...`"
    extra = f" out={folder}" if folder != gt_database_dir(reader_config) else ""
    return (f"`sparse3d-data nuscenes-gtdb {reader_config.dataroot} version={reader_config.version} "
            f"split={reader_config.split} num_sweeps={reader_config.num_sweeps}{extra}`")


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())
