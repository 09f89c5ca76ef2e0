"""A synthetic database in the official nuScenes v1.0 layout.

Each scene is a straight street: a moving (or parked) ego vehicle drives along it with a
spinning LIDAR_TOP on its roof, past objects of all 10 detection classes (moving at
constant velocity, parked, standing), bicycle racks with cycles parked inside and just
outside, ignored categories (debris, police cars, animals) and building facades. Every
keyframe and sweep is ray-cast with :mod:`sparse3d.synthetic.lidar`, and each annotation's
``num_lidar_pts`` is the number of keyframe points that actually lie inside its box.
Vehicles and cycles are not plain boxes: a lower body plus a full-height part off centre
(a car's cabin behind its bonnet, a truck's cargo box behind its cab, a rider), so that
their front can be told from their back in the point cloud, as on real vehicles; buses,
trailers, pedestrians, cones and barriers stay boxes.

The database holds what the official devkit's ``NuScenes(...)`` needs to load and its
``NuScenesEval`` needs to run (all 13 tables, a map file, a custom ``splits.json``), and
exercises the evaluation's edge cases: objects beyond and near the class ranges,
partial-lifetime and single-frame instances (NaN velocity), annotations without an
attribute, zero-point boxes (some with radar points), small roll and pitch, bike racks.

Output is byte-identical for the same config (PCG64 RNG, md5-derived tokens).

Examples:
    >>> write_synthetic_nuscenes("/tmp/nusc", NuScenesSynthConfig(seed=0))
"""

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sparse3d.data.images import write_png
from sparse3d.data.nuscenes.classes import (
    ATTRIBUTE_NAMES,
    BICYCLE_RACK,
    category_to_detection_name,
)
from sparse3d.data.nuscenes.errors import NuScenesFormatError
from sparse3d.engine.config import at_least, between, check_ranges
from sparse3d.geometry.poses import Pose, points_in_boxes
from sparse3d.geometry.rotations import (
    quats_from_rotmats,
    rotmats_from_quats,
    yaw_matrices,
)
from sparse3d.io.atomic import write_bytes_atomic, write_json_atomic
from sparse3d.synthetic.lidar import LidarScene, SpinningLidarConfig, simulate_sweep

LIDAR_TRANSLATION = (0.943713, 0.0, 1.84023)
"""LIDAR_TOP mounting position on the ego vehicle (metres), as on the nuScenes cars."""
LIDAR_YAW = -np.pi / 2
"""LIDAR_TOP mounting yaw: its +x axis points to the vehicle's right, as on the nuScenes cars."""
KEYFRAME_INTERVAL_US = 500_000
"""Keyframes (samples) come at 2 Hz."""
SWEEP_INTERVAL_US = 50_000
"""The LiDAR spins at 20 Hz; sweeps are this far apart."""


@dataclass(frozen=True)
class NuScenesSynthConfig:
    """What :func:`write_synthetic_nuscenes` generates."""

    seed: int = field(default=0, metadata=at_least(0))
    """Seeds everything (>= 0): same seed and config give byte-identical files."""
    num_scenes: int = field(default=2, metadata=at_least(1))
    """Number of scenes (one log each)."""
    samples_per_scene: int = field(default=3, metadata=at_least(1))
    """Keyframes per scene, 0.5 s apart."""
    sweeps_per_sample: int = field(default=1, metadata=between(0, 9))
    """Non-keyframe LiDAR sweeps (0.05 s apart) written before each keyframe (<= 9)."""
    objects_per_scene: int = field(default=40, metadata=at_least(10))
    """Annotated objects per scene, besides bike racks and ignored categories; every
    detection class appears at least once."""
    version: str = "v1.0-synth"
    """Name of the table folder, e.g. ``v1.0-synth`` (custom splits)."""
    scene_names: tuple[str, ...] = ()
    """Names of the scenes (default ``scene-0001``, ...). With real nuScenes names and a
    version such as ``v1.0-mini``, the official splits (e.g. ``mini_val``) apply."""
    val_fraction: float = field(default=0.5, metadata=between(0, 1))
    """Fraction of scenes (at least one) in the ``synth_val`` split; the rest is ``synth_train``."""
    lidar: SpinningLidarConfig = field(default_factory=SpinningLidarConfig)
    """The spinning LiDAR that produces the point clouds."""

    def __post_init__(self):
        if self.num_scenes < 1 or self.samples_per_scene < 1:
            raise NuScenesFormatError(
                f"NuScenesSynthConfig: num_scenes and samples_per_scene must be >= 1, "
                f"got {self.num_scenes} and {self.samples_per_scene}"
            )
        if not 0 <= self.sweeps_per_sample <= 9:
            raise NuScenesFormatError(
                f"NuScenesSynthConfig: sweeps_per_sample must be in [0, 9], got {self.sweeps_per_sample}"
            )
        if self.objects_per_scene < 10:
            raise NuScenesFormatError(
                f"NuScenesSynthConfig: objects_per_scene must be >= 10 (one per class), got {self.objects_per_scene}"
            )
        if self.scene_names and len(self.scene_names) != self.num_scenes:
            raise NuScenesFormatError(
                f"NuScenesSynthConfig: scene_names has {len(self.scene_names)} names for {self.num_scenes} scenes"
            )
        if not self.version or "/" in self.version:
            raise NuScenesFormatError(f"NuScenesSynthConfig: version must be a folder name, got {self.version!r}")
        check_ranges(self)  # the declared ranges the checks above do not cover (seed, val_fraction)


@dataclass(frozen=True)
class _ClassSpec:
    category: str
    size_wlh: tuple[float, float, float]
    speed_range: tuple[float, float]
    moving_fraction: float
    lateral: tuple[float, ...]
    weight: float
    profile: tuple[float, float, float] | None = None
    """What the LiDAR sees of the annotated box: None for the whole box, else (body height,
    top length, top centre) as fractions of the box's height, length and length (the centre
    forward of the box centre): a body over the whole footprint up to that height, plus a
    full-height part of that length. Asymmetric, so the heading is observable."""


_CAR = (0.5, 0.55, -0.08)  # bonnet in front of the cabin, short boot behind
_TRUCK = (0.7, 0.7, -0.15)  # cab in front of a taller cargo box
_CONSTRUCTION = (0.55, 0.45, -0.2)
_CYCLE = (0.55, 0.4, -0.1)  # frame, with the rider / saddle behind the middle
_CLASS_SPECS = (
    _ClassSpec("vehicle.car", (1.95, 4.6, 1.73), (4.0, 12.0), 0.6, (-7.0, -3.5, 3.5, 7.0, -10.0, 10.0), 0.28, _CAR),
    _ClassSpec("vehicle.truck", (2.5, 6.9, 2.8), (3.0, 9.0), 0.5, (-7.0, -3.5, 3.5, 7.0), 0.08, _TRUCK),
    _ClassSpec("vehicle.bus.rigid", (2.9, 11.0, 3.5), (3.0, 8.0), 0.6, (-7.0, 7.0), 0.04),
    _ClassSpec("vehicle.trailer", (2.9, 12.0, 3.9), (3.0, 7.0), 0.4, (-7.0, 7.0), 0.04),
    _ClassSpec("vehicle.construction", (2.8, 6.5, 3.2), (0.5, 1.5), 0.2, (-10.0, 10.0), 0.04, _CONSTRUCTION),
    _ClassSpec("human.pedestrian.adult", (0.67, 0.73, 1.77), (0.8, 1.8), 0.6, (-12.5, 12.5), 0.2),
    _ClassSpec("vehicle.motorcycle", (0.77, 2.1, 1.47), (4.0, 10.0), 0.5, (-3.5, 3.5, -10.0, 10.0), 0.05, _CYCLE),
    _ClassSpec("vehicle.bicycle", (0.6, 1.7, 1.28), (2.5, 6.0), 0.5, (-9.0, 9.0), 0.05, _CYCLE),
    _ClassSpec("movable_object.trafficcone", (0.41, 0.41, 1.07), (0.0, 0.0), 0.0, (-8.5, 8.5), 0.11),
    _ClassSpec("movable_object.barrier", (2.5, 0.5, 0.98), (0.0, 0.0), 0.0, (-8.8, 8.8), 0.11),
)
_IGNORED_SPECS = (
    _ClassSpec("movable_object.debris", (0.5, 0.6, 0.3), (0.0, 0.0), 0.0, (-5.0, 5.0), 1.0),
    _ClassSpec("vehicle.emergency.police", (2.0, 5.0, 1.8), (4.0, 10.0), 0.7, (-7.0, 7.0), 1.0, _CAR),
    _ClassSpec("animal", (0.4, 0.8, 0.6), (0.5, 2.0), 0.5, (-12.0, 12.0), 1.0),
)
_RACK_SIZE_WLH = (1.6, 4.0, 1.2)
_SCENE_EPOCH_US = 1_533_000_000_000_000
_VISIBILITY_LEVELS = (("1", "v0-40"), ("2", "v40-60"), ("3", "v60-80"), ("4", "v80-100"))
_CATEGORIES = tuple(s.category for s in _CLASS_SPECS + _IGNORED_SPECS) + (BICYCLE_RACK,)


@dataclass
class _Instance:
    """One object over its lifetime: a constant-velocity box (global frame)."""

    category: str
    position: np.ndarray  # [3] centre at scene time 0
    velocity: np.ndarray  # [3] m/s
    size_wlh: np.ndarray  # [3]
    yaw: float
    tilt: tuple[float, float]  # small (roll, pitch)
    first: int  # first and last keyframe index with an annotation
    last: int
    attribute: str  # '' for none
    solid: bool = True  # False for racks: the LiDAR sees through them
    profile: tuple[float, float, float] | None = None  # _ClassSpec.profile


def write_synthetic_nuscenes(out_dir: str | os.PathLike, config: NuScenesSynthConfig = NuScenesSynthConfig()) -> Path:
    """Generates a synthetic nuScenes v1.0 database.

    Args:
        out_dir: the dataroot to create: ``<version>/`` (13 tables + ``splits.json`` with
            ``synth_train``, ``synth_val`` and ``synth_all``), ``samples/LIDAR_TOP``,
            ``sweeps/LIDAR_TOP`` (float32 [N, 5] x, y, z, intensity, ring in the sensor
            frame) and ``maps/``.
        config: size and seed.

    Returns:
        The dataroot path.
    """
    root = Path(out_dir)
    tables = _empty_tables()
    scene_names = []
    for scene_idx in range(config.num_scenes):
        scene_names.append(_write_scene(root, config, scene_idx, tables))
    _finish_static_tables(root, tables)
    for name, records in tables.items():
        write_json_atomic(root / config.version / f"{name}.json", records, indent=0)
    n_val = max(1, int(round(config.val_fraction * config.num_scenes)))
    splits = {"synth_train": scene_names[: len(scene_names) - n_val], "synth_val": scene_names[-n_val:],
              "synth_all": scene_names}
    write_json_atomic(root / config.version / "splits.json", splits, indent=0)
    return root


def token(*parts) -> str:
    """Deterministic 32-hex token of its parts."""
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


def _empty_tables() -> dict[str, list]:
    names = ("attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map", "sample",
             "sample_annotation", "sample_data", "scene", "sensor", "visibility")
    return {name: [] for name in names}


def _finish_static_tables(root: Path, tables: dict[str, list]) -> None:
    """Fills the tables that do not depend on the scenes' content, and the map file."""
    tables["attribute"] = [{"token": token("attribute", a), "name": a, "description": a} for a in ATTRIBUTE_NAMES]
    tables["category"] = [
        {"token": token("category", c), "name": c, "description": c, "index": i} for i, c in enumerate(_CATEGORIES)
    ]
    tables["visibility"] = [{"token": t, "level": level, "description": level} for t, level in _VISIBILITY_LEVELS]
    tables["sensor"] = [{"token": token("sensor", "LIDAR_TOP"), "channel": "LIDAR_TOP", "modality": "lidar"}]
    map_token = token("map", "synth-street")
    filename = f"maps/{map_token}.png"
    write_png(root / filename, np.full((1, 1), 128, np.uint8))  # the devkit only checks that the map file exists
    tables["map"] = [{"token": map_token, "log_tokens": [log["token"] for log in tables["log"]],
                      "category": "semantic_prior", "filename": filename}]


@dataclass(frozen=True)
class _Scene:
    """One generated scene: its world and the tokens of its records."""

    index: int
    log_name: str
    start_us: int
    ego_speed: float  # m/s along the street
    heading: float  # street direction (radians, global frame)
    origin: np.ndarray  # [3] ego position at scene time 0
    instances: list[_Instance]
    facades: np.ndarray  # [F, 7] unannotated static boxes
    calib: Pose  # LIDAR_TOP -> ego
    calib_token: str
    sample_tokens: list[str]
    instance_tokens: list[str]
    ann_tokens: dict[tuple[int, int], str]  # (instance, keyframe) -> annotation token

    def ego_pose(self, t: float) -> Pose:
        """Ego -> global at scene time ``t`` seconds."""
        along = np.array([np.cos(self.heading), np.sin(self.heading), 0.0])
        return Pose(yaw_matrices(self.heading), self.origin + along * self.ego_speed * t)


def _write_scene(root: Path, config: NuScenesSynthConfig, scene_idx: int, tables: dict[str, list]) -> str:
    """Generates one scene, writes its point clouds and appends its table records."""
    rng = np.random.default_rng([config.seed, scene_idx])
    name = config.scene_names[scene_idx] if config.scene_names else f"scene-{scene_idx + 1:04d}"
    scene = _make_scene(rng, config, scene_idx)
    log_token, scene_token = token(config.seed, "log", scene_idx), token(config.seed, "scene", scene_idx)
    tables["log"].append({"token": log_token, "logfile": scene.log_name, "vehicle": "synth",
                          "date_captured": "2018-08-01", "location": "synth-street"})
    tables["calibrated_sensor"].append({
        "token": scene.calib_token, "sensor_token": token("sensor", "LIDAR_TOP"),
        "translation": scene.calib.translation.tolist(),
        "rotation": _quat_list(quats_from_rotmats(scene.calib.rotation)), "camera_intrinsic": [],
    })
    for k, sample_tok in enumerate(scene.sample_tokens):
        tables["sample"].append({
            "token": sample_tok, "timestamp": scene.start_us + k * KEYFRAME_INTERVAL_US, "scene_token": scene_token,
            "prev": scene.sample_tokens[k - 1] if k > 0 else "",
            "next": scene.sample_tokens[k + 1] if k + 1 < len(scene.sample_tokens) else "",
        })
        # The sweeps before the keyframe, oldest first, then the keyframe itself.
        for j in range(config.sweeps_per_sample, -1, -1):
            _write_sweep(root, config, rng, tables, scene, k, j)
    for i, inst in enumerate(scene.instances):
        tables["instance"].append({
            "token": scene.instance_tokens[i], "category_token": token("category", inst.category),
            "nbr_annotations": inst.last - inst.first + 1, "first_annotation_token": scene.ann_tokens[(i, inst.first)],
            "last_annotation_token": scene.ann_tokens[(i, inst.last)],
        })
    tables["scene"].append({
        "token": scene_token, "log_token": log_token, "nbr_samples": len(scene.sample_tokens),
        "first_sample_token": scene.sample_tokens[0], "last_sample_token": scene.sample_tokens[-1], "name": name,
        "description": f"synthetic street, ego speed {scene.ego_speed:.1f} m/s",
    })
    return name


def _make_scene(rng, config: NuScenesSynthConfig, scene_idx: int) -> _Scene:
    """Draws the street, the ego motion and the objects of one scene."""
    # Every third scene the ego waits (e.g. at a light); otherwise it drives along the street.
    ego_speed = 0.0 if scene_idx % 3 == 2 else float(rng.uniform(4.0, 9.0))
    heading = float(rng.uniform(-np.pi, np.pi))
    origin = np.array([rng.uniform(300.0, 1500.0), rng.uniform(300.0, 1500.0), 0.0])
    along = np.array([np.cos(heading), np.sin(heading), 0.0])
    across = np.array([-np.sin(heading), np.cos(heading), 0.0])
    travel = ego_speed * (config.samples_per_scene - 1) * KEYFRAME_INTERVAL_US * 1e-6
    instances = _populate(rng, config, origin, along, across, heading, travel)
    facades = _facades(rng, origin, along, across, heading, travel)
    calib = Pose(yaw_matrices(LIDAR_YAW), np.array(LIDAR_TRANSLATION))
    return _Scene(
        index=scene_idx, log_name=f"synth-{config.seed}-{scene_idx:04d}",
        start_us=_SCENE_EPOCH_US + scene_idx * 100_000_000, ego_speed=ego_speed, heading=heading, origin=origin,
        instances=instances, facades=facades, calib=calib,
        calib_token=token(config.seed, "calibrated_sensor", scene_idx),
        sample_tokens=[token(config.seed, "sample", scene_idx, k) for k in range(config.samples_per_scene)],
        instance_tokens=[token(config.seed, "instance", scene_idx, i) for i in range(len(instances))],
        ann_tokens={(i, k): token(config.seed, "ann", scene_idx, i, k)
                    for i, inst in enumerate(instances) for k in range(inst.first, inst.last + 1)},
    )


def _write_sweep(root: Path, config: NuScenesSynthConfig, rng, tables: dict[str, list], scene: _Scene, k: int,
                 j: int) -> None:
    """Ray-casts and writes the sweep ``j`` steps before keyframe ``k`` (j = 0: the keyframe,
    which also gets its annotations) and appends its sample_data and ego_pose records."""
    t_us = scene.start_us + k * KEYFRAME_INTERVAL_US - j * SWEEP_INTERVAL_US
    t = (t_us - scene.start_us) * 1e-6
    is_key = j == 0
    ego = scene.ego_pose(t)
    lidar_to_global = ego.compose(scene.calib)
    alive = [i for i, inst in enumerate(scene.instances) if inst.first <= k <= inst.last]
    world = _lidar_scene(scene.instances, alive, scene.facades, t)
    points = simulate_sweep(world, lidar_to_global.matrix(), config.lidar, seed=int(rng.integers(2**31)))
    if is_key:
        points, counts = _points_and_counts(points, lidar_to_global, [_box_at(scene.instances[i], t) for i in alive],
                                            [scene.instances[i].size_wlh for i in alive])
    filename = f"{'samples' if is_key else 'sweeps'}/LIDAR_TOP/{scene.log_name}__LIDAR_TOP__{t_us}.pcd.bin"
    write_bytes_atomic(root / filename, points.tobytes())
    sd_token = token(config.seed, "sample_data", scene.index, t_us)
    tables["ego_pose"].append({"token": sd_token, "timestamp": t_us, "rotation": _quat_list(
        quats_from_rotmats(ego.rotation)), "translation": ego.translation.tolist()})
    previous = tables["sample_data"][-1] if k > 0 or j < config.sweeps_per_sample else None
    if previous is not None:
        previous["next"] = sd_token
    tables["sample_data"].append({
        "token": sd_token, "sample_token": scene.sample_tokens[k], "ego_pose_token": sd_token,
        "calibrated_sensor_token": scene.calib_token, "timestamp": t_us, "fileformat": "pcd",
        "is_key_frame": is_key, "height": 0, "width": 0, "filename": filename,
        "prev": previous["token"] if previous is not None else "", "next": "",
    })
    if is_key:
        _append_annotations(tables, rng, scene, alive, k, t, counts)


_BOUNDARY_GUARD = 5e-3
"""Points closer than this (metres) to an annotated box's surface are dropped, so that
``num_lidar_pts`` does not depend on the float precision of whoever recounts it (the
devkit transforms float32 points in float32)."""


def _points_and_counts(points: np.ndarray, lidar_to_global: Pose, boxes: list, sizes_wlh: list) -> tuple:
    """Drops the points that straddle an annotated box's surface and counts the rest per box.

    Args:
        points: float32 [P, 5] keyframe cloud, sensor frame.
        lidar_to_global: the keyframe's sensor pose.
        boxes: per box (centre [3], quaternion [4]), global frame.
        sizes_wlh: per box size (w, l, h).

    Returns:
        points: float32 [P', 5] the kept points; counts: int64 [M] points inside each box.
    """
    if not boxes:
        return points, np.zeros(0, np.int64)
    global_points = lidar_to_global.apply(points[:, :3])
    centers = np.stack([b[0] for b in boxes])
    rotations = rotmats_from_quats(np.stack([b[1] for b in boxes]))
    extents = np.stack(sizes_wlh)[:, [1, 0, 2]]
    outer = points_in_boxes(global_points, centers, rotations, extents + 2 * _BOUNDARY_GUARD)
    inner = points_in_boxes(global_points, centers, rotations, extents - 2 * _BOUNDARY_GUARD)
    keep = ~(outer & ~inner).any(axis=0)
    return points[keep], inner[:, keep].sum(axis=1)


def _append_annotations(tables, rng, scene: _Scene, alive: list[int], k: int, t: float, counts: np.ndarray) -> None:
    """Appends the keyframe annotations of the instances alive at keyframe ``k``."""
    ann_tokens = scene.ann_tokens
    for n, i in enumerate(alive):
        inst = scene.instances[i]
        centre, quat = _box_at(inst, t)
        num_lidar = int(counts[n])
        # A few vehicles also carry radar returns, so some zero-LiDAR-point boxes stay in the eval.
        num_radar = int(rng.integers(1, 6)) if inst.category.startswith("vehicle.") and rng.random() < 0.3 else 0
        visibility = _VISIBILITY_LEVELS[min(3, num_lidar // 20)][0]
        tables["sample_annotation"].append({
            "token": ann_tokens[(i, k)], "sample_token": scene.sample_tokens[k],
            "instance_token": scene.instance_tokens[i],
            "visibility_token": visibility,
            "attribute_tokens": [token("attribute", inst.attribute)] if inst.attribute else [],
            "translation": centre.tolist(), "size": inst.size_wlh.tolist(), "rotation": _quat_list(quat),
            "prev": ann_tokens[(i, k - 1)] if k > inst.first else "",
            "next": ann_tokens[(i, k + 1)] if k < inst.last else "",
            "num_lidar_pts": num_lidar, "num_radar_pts": num_radar,
        })


def _populate(rng, config, origin, along, across, heading, travel) -> list[_Instance]:
    """Annotated objects of one scene: every class once, then weighted draws, plus a bike
    rack with cycles inside and just outside, and a few ignored-category objects."""
    specs = list(_CLASS_SPECS)
    weights = np.array([s.weight for s in _CLASS_SPECS])
    extra = rng.choice(len(specs), size=config.objects_per_scene - len(specs), p=weights / weights.sum())
    chosen = specs + [specs[i] for i in extra] + list(_IGNORED_SPECS)
    n_keys = config.samples_per_scene
    instances = [_sample_instance(rng, spec, origin, along, across, heading, travel, n_keys) for spec in chosen]
    instances += _bike_rack(rng, origin, along, across, heading, travel, n_keys)
    return instances


def _sample_instance(rng, spec: _ClassSpec, origin, along, across, heading, travel, n_keys) -> _Instance:
    s = rng.uniform(-55.0, travel + 65.0)
    lateral = float(rng.choice(spec.lateral)) + rng.uniform(-0.4, 0.4)
    moving = rng.random() < spec.moving_fraction
    speed = rng.uniform(*spec.speed_range) if moving else 0.0
    # Traffic keeps to the right: lanes right of the ego (negative lateral) go forward.
    direction = 1.0 if lateral < 0 else -1.0
    if spec.category.startswith("human") or spec.category == "animal":
        direction = float(rng.choice([-1.0, 1.0]))
    yaw = heading + (0.0 if direction > 0 else np.pi) + rng.normal(0.0, 0.05)
    if spec.category == "movable_object.trafficcone":
        yaw = rng.uniform(-np.pi, np.pi)
    size = np.asarray(spec.size_wlh) * rng.uniform(0.85, 1.15, 3)
    position = origin + s * along + lateral * across + np.array([0.0, 0.0, size[2] / 2.0])
    velocity = speed * np.array([np.cos(yaw), np.sin(yaw), 0.0])
    tilt = (rng.normal(0.0, 0.03), rng.normal(0.0, 0.03)) if rng.random() < 0.3 else (0.0, 0.0)
    first, last = _lifetime(rng, n_keys)
    return _Instance(spec.category, position, velocity, size, float(yaw), tilt, first, last,
                     _attribute(rng, spec.category, speed), profile=spec.profile)


def _lifetime(rng, n_keys: int) -> tuple[int, int]:
    """Keyframe span of an instance: mostly the whole scene, some partial, some a single frame."""
    u = rng.random()
    if u < 0.1:
        k = int(rng.integers(n_keys))
        return k, k
    if u < 0.25 and n_keys > 1:
        a, b = sorted(rng.integers(n_keys, size=2))
        return int(a), int(b)
    return 0, n_keys - 1


def _attribute(rng, category: str, speed: float) -> str:
    """The annotated attribute; about 5% of boxes that could have one are left without."""
    name = category_to_detection_name(category)
    if name in (None, "traffic_cone", "barrier") or rng.random() < 0.05:
        return ""
    if name == "pedestrian":
        return "pedestrian.moving" if speed > 0 else str(rng.choice(["pedestrian.standing",
                                                                        "pedestrian.sitting_lying_down"]))
    if name in ("bicycle", "motorcycle"):
        return "cycle.with_rider" if speed > 0 or rng.random() < 0.2 else "cycle.without_rider"
    return "vehicle.moving" if speed > 0 else str(rng.choice(["vehicle.parked", "vehicle.stopped"]))


def _bike_rack(rng, origin, along, across, heading, travel, n_keys) -> list[_Instance]:
    """A rack on the sidewalk holding two bicycles and a motorcycle, plus a bicycle parked
    with its centre 0.2 m beyond the rack's end (kept by the eval's bike-rack filter)."""
    s = rng.uniform(5.0, travel + 25.0)
    side = float(rng.choice([-1.0, 1.0]))
    rack_w, rack_l, rack_h = _RACK_SIZE_WLH
    centre = origin + s * along + side * 13.5 * across + np.array([0.0, 0.0, rack_h / 2.0])
    rack = _Instance(BICYCLE_RACK, centre, np.zeros(3), np.array(_RACK_SIZE_WLH), heading, (0.0, 0.0),
                     0, n_keys - 1, "", solid=False)
    cycles = []
    for offset, category in ((-1.2, "vehicle.bicycle"), (0.0, "vehicle.motorcycle"), (1.2, "vehicle.bicycle"),
                             (rack_l / 2.0 + 0.2, "vehicle.bicycle")):
        spec = next(s for s in _CLASS_SPECS if s.category == category)
        size = np.asarray(spec.size_wlh) * rng.uniform(0.9, 1.05, 3)
        # Cycles stand across the rack; centre height h/2 lies inside the rack's 1.2 m height.
        position = centre + offset * along + np.array([0.0, 0.0, size[2] / 2.0 - rack_h / 2.0])
        cycles.append(_Instance(category, position, np.zeros(3), size, heading + np.pi / 2, (0.0, 0.0),
                                0, n_keys - 1, "cycle.without_rider", profile=spec.profile))
    return [rack] + cycles


def _facades(rng, origin, along, across, heading, travel) -> np.ndarray:
    """Unannotated building facades lining both sides of the street: float64 [F, 7]."""
    boxes = []
    for side in (-1.0, 1.0):
        s = -80.0
        while s < travel + 90.0:
            length = rng.uniform(10.0, 30.0)
            height = rng.uniform(5.0, 20.0)
            depth = rng.uniform(0.0, 3.0)
            c = origin + (s + length / 2) * along + side * (19.0 + depth) * across + np.array([0, 0, height / 2])
            boxes.append([*c, length - 1.0, 4.0, height, heading])
            s += length
    return np.array(boxes)


def _box_at(inst: _Instance, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre [3] and quaternion (w, x, y, z) [4] of an instance at scene time ``t``."""
    roll, pitch = inst.tilt
    rotation = yaw_matrices(inst.yaw) @ _axis_rotation(1, pitch) @ _axis_rotation(0, roll)
    return inst.position + inst.velocity * t, quats_from_rotmats(rotation)


def _lidar_scene(instances: list[_Instance], alive: list[int], static: np.ndarray, t: float) -> LidarScene:
    """What the LiDAR sees at scene time ``t``: facades plus the solid objects alive now."""
    parts = [_silhouette(instances[i], t) for i in alive if instances[i].solid]
    objects = np.concatenate(parts, axis=0) if parts else np.zeros((0, 7))
    boxes = np.concatenate([objects, static], axis=0)
    reflectivity = np.concatenate([np.full(len(objects), 0.6), np.full(len(static), 0.3)])
    return LidarScene(boxes=boxes, ground_z=0.0, reflectivity=reflectivity)


def _silhouette(inst: _Instance, t: float) -> np.ndarray:
    """float64 [1 or 2, 7] (x, y, z, dx, dy, dz, yaw) boxes the LiDAR sees of an instance at
    scene time ``t``: its annotated box, or the body and top part of its profile (both
    inside the annotated box, sharing its bottom face)."""
    centre = inst.position + inst.velocity * t
    length, width, height = inst.size_wlh[1], inst.size_wlh[0], inst.size_wlh[2]
    if inst.profile is None:
        return np.array([[*centre, length, width, height, inst.yaw]])
    body_height, top_length, top_centre = inst.profile
    bottom = centre[2] - height / 2.0
    forward = np.array([np.cos(inst.yaw), np.sin(inst.yaw), 0.0])
    body = [centre[0], centre[1], bottom + body_height * height / 2.0, length, width, body_height * height, inst.yaw]
    top_xy = centre + top_centre * length * forward
    top = [top_xy[0], top_xy[1], centre[2], top_length * length, width, height, inst.yaw]
    return np.array([body, top])


def _axis_rotation(axis: int, angle: float) -> np.ndarray:
    """float64 [3, 3] rotation by ``angle`` about coordinate axis ``axis`` (0 = x, 1 = y, 2 = z)."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def _quat_list(q: np.ndarray) -> list[float]:
    return [float(v) for v in q]
