"""nuScenes LiDAR detection data: training samples that are a pure function of
(seed, epoch, position) and batches that are a pure function of (seed, step), and the
evaluation samples in split order.

A training sample goes through OpenPCDet's CenterPoint pipeline:

1. read the keyframe and its sweeps (:class:`NuScenesReader`); keep GT boxes with at
   least ``filter_min_points_in_gt`` LiDAR points;
2. GT sampling (:func:`sample_gt`), until ``gt_sampling_stop_epoch``;
3. global augmentation (:func:`augment`: flips, rotation, scaling, translation);
4. boxes of classes outside ``class_names`` dropped, labels mapped to indices into it;
5. points outside the range in x or y removed, boxes whose centre is outside the range
   removed (``mask_points_and_boxes_outside_range``); points shuffled;
6. NaN velocities set to 0 (``SET_NAN_VELOCITY_TO_ZEROS``), if configured.

A sample left without boxes is replaced by a random other one, as the reference does.

Randomness: the epoch's order is the CBGS list (drawn once per seed) shuffled per epoch,
and each sample's choices come from its own generator, seeded by
``derive_seed(seed, stream, epoch, index_in_epoch)``. So ``batch(step, B, seed)`` depends
only on its arguments (a resumed run sees the same batches), and a sample's content does
not depend on the batch size.

Examples:
    >>> config = DetectionDataConfig("v1.0-trainval")
    >>> data = DetectionTrainData(config, "/data/nuscenes")
    >>> batch = data.batch(step=0, batch_size=4, seed=0)          # LidarBatch
    >>> for batch in DetectionEvalData(config, "/data/nuscenes").batches(8): ...
"""

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sparse3d.data.nuscenes.classes import DETECTION_NAMES
from sparse3d.data.nuscenes.errors import NuScenesFormatError
from sparse3d.data.nuscenes.splits import official_splits, scenes_of_split
from sparse3d.detection.augment import AugmentConfig, augment
from sparse3d.detection.batch import DetectionSample, LidarBatch, collate
from sparse3d.detection.cbgs import cbgs_groups, cbgs_indices
from sparse3d.detection.gt_database import (
    GtDatabase,
    GtSamplerConfig,
    build_gt_database,
    gt_database_dir,
    load_gt_database,
    sample_gt,
)
from sparse3d.detection.nuscenes.reader import (
    LidarSample,
    NuScenesReader,
    NuScenesReaderConfig,
)
from sparse3d.engine.config import at_least, check_ranges
from sparse3d.engine.seeding import derive_seed
from sparse3d.io.read import read_json

# Stream tags: the second key of derive_seed, so that the draws of the CBGS list, the epoch
# order, the training samples and the eval shuffles never share a seed.
_CBGS_STREAM = 0xCB65
_ORDER_STREAM = 0x0D3E
_SAMPLE_STREAM = 0x5A3E
_EVAL_STREAM = 0xE7A1
_MAX_REDRAWS = 100
"""Replacements tried for a training sample that is left without GT boxes."""


@dataclass(frozen=True)
class DetectionDataConfig:
    """The nuScenes data of a LiDAR detector (defaults: OpenPCDet's
    ``cbgs_voxel0075_res3d_centerpoint``)."""

    version: str = "v1.0-trainval"
    """Table folder, e.g. ``v1.0-trainval``, ``v1.0-mini`` or ``v1.0-synth``."""
    train_split: str = "train"
    """Split to train on (official or from ``splits.json``)."""
    val_split: str = "val"
    """Split to evaluate on."""
    num_sweeps: int = field(default=10, metadata=at_least(1))
    """LiDAR sweeps per sample, the keyframe included."""
    point_cloud_range: tuple[float, ...] = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0)
    """[x0, y0, z0, x1, y1, z1] metres: points outside it in x or y and boxes whose centre
    is outside it are removed (z is left to the voxelizer for points, as the reference does)."""
    class_names: tuple[str, ...] = DETECTION_NAMES
    """Classes to detect; labels index this tuple and boxes of other classes are dropped.
    (OpenPCDet's CenterPoint orders them car, truck, construction_vehicle, bus, trailer,
    barrier, motorcycle, bicycle, pedestrian, traffic_cone.)"""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Global augmentations (training only)."""
    gt_sampling: GtSamplerConfig = field(default_factory=GtSamplerConfig)
    """GT sampling (training only)."""
    gt_sampling_stop_epoch: int | None = field(default=None, metadata=at_least(0))
    """First epoch without GT sampling (the reference's fade strategy turns it off for the
    last epochs); None keeps it on throughout."""
    gt_database: str | None = None
    """GT database folder; default ``DATAROOT/sparse3d_gtdb_<version>_<train_split>``.
    Built on first use when missing; a stale one is an error."""
    cbgs: bool = True
    """Class-balanced resampling of the training list (BALANCED_RESAMPLING)."""
    filter_min_points_in_gt: int = field(default=1, metadata=at_least(0))
    """Keep GT boxes with at least this many LiDAR points (FILTER_MIN_POINTS_IN_GT)."""
    nan_velocity_to_zero: bool = True
    """Replace undefined (NaN) GT velocities by 0 (SET_NAN_VELOCITY_TO_ZEROS)."""
    shuffle_points: bool = True
    """Shuffle each sample's points (train and eval, as the reference), deterministically."""
    cache_dir: str | None = None
    """Folder for the reader's info cache; None disables caching."""

    def __post_init__(self):
        check_ranges(self)
        r = self.point_cloud_range
        if len(r) != 6 or not all(r[d] < r[d + 3] for d in range(3)):
            raise ValueError(f"DetectionDataConfig.point_cloud_range: expected [x0, y0, z0, x1, y1, z1] with "
                             f"lower < upper, got {list(r)}")
        unknown = [n for n in self.class_names if n not in DETECTION_NAMES]
        if not self.class_names or unknown or len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"DetectionDataConfig.class_names: expected distinct names of {list(DETECTION_NAMES)}, "
                             f"got {list(self.class_names)}")

    def reader_config(self, dataroot: str | Path, split: str) -> NuScenesReaderConfig:
        """The reader settings of one split of the database in ``dataroot``."""
        return NuScenesReaderConfig(str(dataroot), self.version, split, self.num_sweeps, cache_dir=self.cache_dir)


class DetectionTrainData:
    """Training samples and batches of the train split.

    Args:
        config: the data settings.
        dataroot: the nuScenes dataroot (holds ``<version>/``, ``samples/``, ``sweeps/``).
        database: an opened GT database to use instead of ``config.gt_database``.
    """

    def __init__(self, config: DetectionDataConfig, dataroot: str | Path, database: GtDatabase | None = None):
        self.config = config
        reader_config = config.reader_config(dataroot, config.train_split)
        self.reader = NuScenesReader(reader_config)
        if len(self.reader) == 0:
            raise ValueError(f"DetectionTrainData: split {config.train_split!r} of {dataroot}/{config.version} "
                             f"has no samples")
        self.database = None
        if config.gt_sampling.enabled:
            self.database = database or _open_database(config, reader_config)
        # As the reference, classes outside class_names are never pasted (they would only
        # take space and remove scene points, then be dropped).
        groups = tuple(g for g in config.gt_sampling.sample_groups if g.partition(":")[0] in config.class_names)
        self._sampler = replace(config.gt_sampling, sample_groups=groups)
        self._class_of = _class_map(config.class_names)
        self._labels = self._cbgs_labels()
        self._groups = cbgs_groups(self._labels, len(config.class_names)) if config.cbgs else None
        self._base_cache: tuple[int, np.ndarray] | None = None  # (seed, CBGS list)
        self._order_cache: tuple[tuple[int, int], np.ndarray] | None = None  # ((epoch, seed), order)

    @property
    def epoch_length(self) -> int:
        """Samples per epoch: the CBGS list's length, or the split's size without CBGS."""
        return sum(count for _, count in self._groups) if self._groups is not None else len(self.reader)

    def epoch_order(self, epoch: int, seed: int) -> np.ndarray:
        """int64 [epoch_length] reader indices of an epoch's samples, in order: the CBGS
        list of ``seed`` (or every sample) shuffled by ``derive_seed(seed, stream, epoch)``."""
        if self._order_cache is None or self._order_cache[0] != (epoch, seed):
            base = self._base_list(seed)
            order = base[np.random.default_rng(derive_seed(seed, _ORDER_STREAM, epoch)).permutation(len(base))]
            self._order_cache = ((epoch, seed), order)
        return self._order_cache[1]

    def sample(self, index_in_epoch: int, epoch: int, seed: int) -> DetectionSample:
        """The training sample at a position of an epoch (a pure function of the arguments).

        Args:
            index_in_epoch: in ``[0, epoch_length)``.
            epoch: >= 0; decides the order and whether GT sampling is on.
            seed: the run seed.

        Returns:
            A :class:`DetectionSample`: points float32 [P, 5], boxes float64 [M >= 1, 9],
            labels int64 [M] into ``config.class_names``.
        """
        if not 0 <= index_in_epoch < self.epoch_length or epoch < 0:
            raise IndexError(f"DetectionTrainData.sample: index_in_epoch must be in [0, {self.epoch_length}) and "
                             f"epoch >= 0, got {index_in_epoch} and {epoch}")
        rng = np.random.default_rng(derive_seed(seed, _SAMPLE_STREAM, epoch, index_in_epoch))
        stop = self.config.gt_sampling_stop_epoch
        with_gt_sampling = self.database is not None and (stop is None or epoch < stop)
        order = self.epoch_order(epoch, seed)
        reader_index = int(order[index_in_epoch])
        for _ in range(_MAX_REDRAWS):
            sample = self._train_sample(self.reader[reader_index], rng, with_gt_sampling)
            if len(sample.gt_boxes):
                return sample
            reader_index = int(order[rng.integers(len(order))])  # as the reference: any entry of the (CBGS) list
        raise ValueError(f"DetectionTrainData: {_MAX_REDRAWS} samples of split {self.config.train_split!r} in a row "
                         f"have no GT box of {list(self.config.class_names)} inside point_cloud_range")

    def batch(self, step: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> LidarBatch:
        """The training batch of a step: stream positions ``step * batch_size`` onwards
        (an epoch ends after ``epoch_length`` positions; a batch may straddle two), or one
        process's contiguous share of them.

        Args:
            step: >= 0.
            batch_size: >= 1, the global batch (a multiple of ``world_size``).
            seed: the run seed.
            rank, world_size: this process's share: samples ``rank * batch_size /
                world_size`` onwards of the global batch.

        Returns:
            The collated :class:`LidarBatch` (CPU tensors).
        """
        if step < 0 or batch_size < 1 or batch_size % world_size or not 0 <= rank < world_size:
            raise ValueError(f"DetectionTrainData.batch: need step >= 0, batch_size >= 1 divisible by world_size and "
                             f"0 <= rank < world_size, got {step}, {batch_size}, {world_size}, {rank}")
        share = batch_size // world_size
        first = step * batch_size + rank * share
        positions = range(first, first + share)
        return collate([self.sample(p % self.epoch_length, p // self.epoch_length, seed) for p in positions])

    def _train_sample(self, raw: LidarSample, rng: np.random.Generator, with_gt_sampling: bool) -> DetectionSample:
        keep = raw.gt_num_lidar_pts >= self.config.filter_min_points_in_gt
        points, boxes, labels = raw.points, raw.gt_boxes[keep], raw.gt_labels[keep]
        if with_gt_sampling:
            points, boxes, labels = sample_gt(points, boxes, labels, self.database, self._sampler, rng)
        points, boxes = augment(points, boxes, self.config.augment, rng)
        return _finish(raw, points, boxes, labels, self.config, self._class_of, rng, remove_outside_boxes=True)

    def _cbgs_labels(self) -> list[np.ndarray]:
        """Each sample's class ids (into class_names) as the reference's info lists hold
        them: boxes with any LiDAR or radar point."""
        out = []
        for info in self.reader.infos:
            seen = np.array(info.gt_num_lidar_pts, np.int64) + np.array(info.gt_num_radar_pts, np.int64) > 0
            ids = self._class_of[np.array(info.gt_labels, np.int64)[seen]]
            out.append(ids[ids >= 0])
        return out

    def _base_list(self, seed: int) -> np.ndarray:
        if self._groups is None:
            return np.arange(len(self.reader), dtype=np.int64)
        if self._base_cache is None or self._base_cache[0] != seed:
            rng = np.random.default_rng(derive_seed(seed, _CBGS_STREAM))
            self._base_cache = (seed, cbgs_indices(self._labels, len(self.config.class_names), rng))
        return self._base_cache[1]


class DetectionEvalData:
    """Evaluation samples of the val split, in split order: no augmentation, no GT
    sampling; points outside the range in x or y removed and shuffled (fixed per sample);
    GT boxes of ``class_names`` kept whatever their position (for reference and drawing;
    metrics come from the tables).

    Args:
        config: the data settings (``config.version`` picks the database's table folder).
        dataroot: the nuScenes dataroot.
        split: the split to read; default ``config.val_split``.

    Raises:
        NuScenesFormatError: ``dataroot`` has no table folder ``config.version``, the split
            is not one of that version (both messages list those that exist), or the split
            holds no sample of the database.
    """

    def __init__(self, config: DetectionDataConfig, dataroot: str | Path, split: str | None = None):
        self.config = config
        split = split or config.val_split
        _check_version_and_split(Path(dataroot), config.version, split)
        self.reader = NuScenesReader(config.reader_config(dataroot, split))
        if len(self.reader) == 0:
            raise NuScenesFormatError(f"{Path(dataroot) / config.version}: split {split!r} has no sample in this "
                                      f"database (none of its scenes is in scene.json)")
        self._class_of = _class_map(config.class_names)

    def __len__(self) -> int:
        return len(self.reader)

    def sample(self, index: int) -> DetectionSample:
        """Sample ``index`` of the split (in ``[0, len)``)."""
        if not 0 <= index < len(self):
            raise IndexError(f"DetectionEvalData.sample: index must be in [0, {len(self)}), got {index}")
        raw = self.reader[index]
        keep = raw.gt_num_lidar_pts >= self.config.filter_min_points_in_gt
        rng = np.random.default_rng(derive_seed(_EVAL_STREAM, index))
        return _finish(raw, raw.points, raw.gt_boxes[keep], raw.gt_labels[keep], self.config, self._class_of, rng,
                       remove_outside_boxes=False)

    def batches(self, batch_size: int) -> Iterator[LidarBatch]:
        """The split in order, ``batch_size`` samples per batch (the last may be smaller)."""
        if batch_size < 1:
            raise ValueError(f"DetectionEvalData.batches: batch_size must be >= 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            yield collate([self.sample(i) for i in range(start, min(start + batch_size, len(self)))])


def _check_version_and_split(dataroot: Path, version: str, split: str) -> None:
    """Raises NuScenesFormatError, listing what exists, when ``dataroot`` has no table folder
    ``version`` or ``split`` is not a split of it (official splits go with their version
    suffix, custom ones come from ``<version>/splits.json``)."""
    if not dataroot.is_dir():
        raise NuScenesFormatError(f"nuScenes dataroot {dataroot}: not a folder")
    if not (dataroot / version / "sample.json").is_file():
        versions = sorted(p.name for p in dataroot.iterdir() if (p / "sample.json").is_file())
        raise NuScenesFormatError(f"{dataroot}: no table folder {version!r} (a folder holding sample.json); "
                                  f"versions there: {versions}")
    try:
        scenes_of_split(dataroot, version, split)
    except NuScenesFormatError as err:
        raise NuScenesFormatError(f"{err}; splits of {dataroot / version}: {_splits_of_version(dataroot, version)}") \
            from None


def _splits_of_version(dataroot: Path, version: str) -> list[str]:
    """The official splits that go with ``version`` and the custom ones of its splits.json."""
    names = list(official_splits())
    custom = dataroot / version / "splits.json"
    if custom.is_file():
        content = read_json(custom, "custom splits", NuScenesFormatError)
        names += [n for n in (content if isinstance(content, dict) else {}) if n not in names]
    found = []
    for name in names:
        try:
            scenes_of_split(dataroot, version, name)
        except NuScenesFormatError:
            continue
        found.append(name)
    return found


def _open_database(config: DetectionDataConfig, reader_config: NuScenesReaderConfig) -> GtDatabase:
    folder = Path(config.gt_database) if config.gt_database else gt_database_dir(reader_config)
    if not (folder / "index.json").is_file():
        return build_gt_database(reader_config, folder)
    return load_gt_database(folder, reader_config)


def _class_map(class_names: tuple[str, ...]) -> np.ndarray:
    """int64 [len(DETECTION_NAMES)]: index into class_names of each detection class, -1 if absent."""
    return np.array([class_names.index(n) if n in class_names else -1 for n in DETECTION_NAMES], np.int64)


def _finish(raw: LidarSample, points: np.ndarray, boxes: np.ndarray, labels: np.ndarray, config: DetectionDataConfig,
            class_of: np.ndarray, rng: np.random.Generator, remove_outside_boxes: bool) -> DetectionSample:
    """Class filtering, range masking, point shuffling and NaN velocities (steps 4-6)."""
    ids = class_of[labels]
    boxes, labels = boxes[ids >= 0], ids[ids >= 0]
    r = config.point_cloud_range
    # As OpenPCDet's mask_points_by_range: x and y only, bounds inclusive.
    points = points[(points[:, 0] >= r[0]) & (points[:, 0] <= r[3]) & (points[:, 1] >= r[1]) & (points[:, 1] <= r[4])]
    if remove_outside_boxes:
        # mask_boxes_outside_range_numpy with USE_CENTER_TO_FILTER (its default): the centre, in 3D.
        inside = ((boxes[:, :3] >= np.array(r[:3])) & (boxes[:, :3] <= np.array(r[3:]))).all(1)
        boxes, labels = boxes[inside], labels[inside]
    if config.shuffle_points:
        points = points[rng.permutation(len(points))]
    if config.nan_velocity_to_zero:
        boxes = boxes.copy()
        boxes[:, 7:9][np.isnan(boxes[:, 7:9])] = 0.0
    return DetectionSample(raw.token, np.ascontiguousarray(points, np.float32), boxes, labels.astype(np.int64),
                           raw.lidar_to_global)
