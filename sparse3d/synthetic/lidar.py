"""A spinning multi-beam LiDAR ray-cast against a ground plane and oriented boxes.

The scene is deliberately simple -- a horizontal ground plane plus yaw-oriented boxes
(vehicles, pedestrians, poles, building facades are all boxes) -- because that is enough
to give point clouds the thin-surface sparsity, occlusion and range fall-off of a real
rotating sensor. Everything is vectorised over rays x boxes in float64 numpy, with a
conservative azimuth / elevation cull before the exact slab test, so one 32-beam sweep
(~35k rays) against a few hundred boxes takes ~0.1 s, and the result depends only on the
inputs and the seed.

Examples:
    >>> scene = street_scene(seed=0)
    >>> pose = np.eye(4); pose[2, 3] = 1.84          # sensor 1.84 m above the world origin
    >>> points = simulate_sweep(scene, pose, SpinningLidarConfig(), seed=0)
    >>> points.shape[1], points.dtype
    (5, dtype('float32'))
"""

from dataclasses import dataclass

import numpy as np

GROUND_ID = -1
"""Hit id of the ground plane in :func:`cast_rays`."""
MISS_ID = -2
"""Hit id of a ray that hits nothing within range."""


@dataclass(frozen=True)
class SpinningLidarConfig:
    """A rotating multi-beam LiDAR (defaults: a nuScenes-like Velodyne HDL-32E)."""

    num_beams: int = 32
    """Number of lasers (rings), evenly spaced in elevation."""
    min_elevation_deg: float = -30.67
    """Elevation of the lowest beam, degrees (negative = downwards)."""
    max_elevation_deg: float = 10.67
    """Elevation of the highest beam, degrees."""
    azimuth_steps: int = 1084
    """Firings per revolution; each firing shoots every beam once."""
    max_range: float = 70.0
    """Returns beyond this range (metres) are dropped."""
    min_range: float = 1.0
    """Returns closer than this (metres) are dropped, as the sensor's blind zone."""
    range_noise_std: float = 0.02
    """Standard deviation of the Gaussian range noise, metres."""

    def __post_init__(self):
        if self.num_beams < 1 or self.azimuth_steps < 1:
            raise ValueError(
                f"SpinningLidarConfig: num_beams and azimuth_steps must be >= 1, "
                f"got {self.num_beams} and {self.azimuth_steps}"
            )
        if not 0.0 <= self.min_range < self.max_range:
            raise ValueError(
                f"SpinningLidarConfig: need 0 <= min_range < max_range, got {self.min_range}, {self.max_range}"
            )


@dataclass(frozen=True)
class LidarScene:
    """Static world geometry seen by the sensor, all in one world frame (z up)."""

    boxes: np.ndarray
    """float64 [M, 7] oriented boxes (x, y, z, dx, dy, dz, yaw): centre, full extents along
    the box's own x / y / z axes, and rotation about world z (radians)."""
    ground_z: float | None = 0.0
    """Height of the horizontal ground plane, or None for no ground."""
    reflectivity: np.ndarray | None = None
    """float [M] per-box reflectivity in [0, 1] (intensity scale); None gives 0.5 for all."""
    ground_reflectivity: float = 0.15
    """Reflectivity of the ground plane."""

    def __post_init__(self):
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 7) if np.size(self.boxes) else np.zeros((0, 7))
        if not np.isfinite(boxes).all() or (boxes[:, 3:6] <= 0).any():
            raise ValueError("LidarScene: boxes must be finite [M, 7] with positive extents dx, dy, dz")
        object.__setattr__(self, "boxes", boxes)
        refl = np.full(len(boxes), 0.5) if self.reflectivity is None else np.asarray(self.reflectivity, np.float64)
        if refl.shape != (len(boxes),):
            raise ValueError(f"LidarScene: reflectivity must have shape [{len(boxes)}], got {list(refl.shape)}")
        object.__setattr__(self, "reflectivity", refl)


def beam_directions(config: SpinningLidarConfig) -> tuple[np.ndarray, np.ndarray]:
    """Unit ray directions of one full revolution, in the sensor frame.

    Rays are ordered firing-major (azimuth, then beam). Azimuth 0 is the sensor's +x axis,
    increasing counter-clockwise about +z.

    Returns:
        directions: float64 [R, 3] with R = azimuth_steps * num_beams.
        rings: int64 [R] beam index, 0 = lowest beam.
    """
    elevations = np.deg2rad(np.linspace(config.min_elevation_deg, config.max_elevation_deg, config.num_beams))
    azimuths = np.arange(config.azimuth_steps) * (2.0 * np.pi / config.azimuth_steps)
    az, el = np.meshgrid(azimuths, elevations, indexing="ij")  # [A, B]
    directions = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)
    rings = np.broadcast_to(np.arange(config.num_beams), az.shape)
    return directions.reshape(-1, 3), rings.reshape(-1).astype(np.int64)


def cast_rays(
    scene: LidarScene, origin: np.ndarray, directions: np.ndarray, max_range: float
) -> tuple[np.ndarray, np.ndarray]:
    """First hit of each ray against the scene.

    Args:
        scene: the world geometry.
        origin: float [3] ray origin, world frame.
        directions: float [R, 3] unit ray directions, world frame.
        max_range: hits farther than this are misses.

    Returns:
        distances: float64 [R] hit distance (inf for a miss).
        hit_ids: int64 [R] index of the box hit, GROUND_ID for the ground, MISS_ID for none.
    """
    origin = np.asarray(origin, np.float64)
    dirs = np.asarray(directions, np.float64)
    best = np.full(len(dirs), np.inf)
    hit_ids = np.full(len(dirs), MISS_ID, np.int64)
    if scene.ground_z is not None:
        down = dirs[:, 2] < 0
        best[down] = (scene.ground_z - origin[2]) / dirs[down, 2]
        hit_ids[down] = GROUND_ID
    candidates = _boxes_in_reach(scene.boxes, origin, max_range)
    for chunk in np.array_split(candidates, max(1, len(candidates) // 64)):
        if len(chunk) == 0:
            continue
        box_idx, ray_idx = _ray_box_candidates(origin, dirs, scene.boxes[chunk])
        t_pair = _ray_box_distances(origin, dirs[ray_idx], scene.boxes[chunk[box_idx]])  # [Q]
        hit = np.isfinite(t_pair)
        ray_idx, t_pair, box_ids = ray_idx[hit], t_pair[hit], chunk[box_idx[hit]]
        # The nearest box per ray; among exactly equal distances the lowest box index wins.
        order = np.lexsort((box_ids, t_pair, ray_idx))
        first = order[np.r_[True, ray_idx[order][1:] != ray_idx[order][:-1]]] if len(order) else order
        rays, t_first = ray_idx[first], t_pair[first]
        closer = t_first < best[rays]
        best[rays[closer]] = t_first[closer]
        hit_ids[rays[closer]] = box_ids[first][closer]
    miss = best > max_range
    best[miss] = np.inf
    hit_ids[miss] = MISS_ID
    return best, hit_ids


def simulate_sweep(
    scene: LidarScene, sensor_pose: np.ndarray, config: SpinningLidarConfig = SpinningLidarConfig(), seed: int = 0
) -> np.ndarray:
    """One revolution of a spinning LiDAR at a fixed pose.

    Args:
        scene: world geometry (world frame).
        sensor_pose: float [4, 4] sensor-to-world transform.
        config: the sensor.
        seed: seeds the range noise; same inputs and seed give the same points.

    Returns:
        float32 [P, 5] returns in the **sensor frame**: x, y, z (metres), intensity in
        [0, 255], ring (beam index, 0 = lowest), ordered by firing then beam.
    """
    points, _ = simulate_sweep_with_hits(scene, sensor_pose, config, seed)
    return points


def simulate_sweeps(
    scene: LidarScene,
    num_sweeps: int = 10,
    sweep_dt: float = 0.1,
    ego_step: float = 1.5,
    sensor_height: float = 1.84,
    config: SpinningLidarConfig = SpinningLidarConfig(),
    seed: int = 0,
) -> np.ndarray:
    """nuScenes-style accumulated sweeps of a sensor driving along world +x: sweep i is
    taken ``(num_sweeps - 1 - i) * ego_step`` metres behind the last one, at height
    ``sensor_height``, with noise seed ``seed + i``.

    Returns:
        float32 [P, 5] x, y, z (metres, in the **last sweep's sensor frame**), intensity in
        [0, 255], and the time lag of the point's sweep behind the last one (seconds;
        ``(num_sweeps - 1 - i) * sweep_dt``), sweep by sweep, oldest first.
    """
    if num_sweeps < 1:
        raise ValueError(f"simulate_sweeps: num_sweeps must be >= 1, got {num_sweeps}")
    sweeps = []
    for i in range(num_sweeps):
        behind = num_sweeps - 1 - i
        pose = np.eye(4)
        pose[0, 3] = -behind * ego_step
        pose[2, 3] = sensor_height
        points = simulate_sweep(scene, pose, config, seed=seed + i)
        # The sensor frames differ only by the translation along x (no rotation).
        xyz = points[:, :3] + np.array([pose[0, 3], 0.0, 0.0])
        lag = np.full((len(points), 1), behind * sweep_dt)
        sweeps.append(np.concatenate([xyz, points[:, 3:4], lag], 1).astype(np.float32))
    return np.concatenate(sweeps)


def simulate_sweep_with_hits(
    scene: LidarScene, sensor_pose: np.ndarray, config: SpinningLidarConfig = SpinningLidarConfig(), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`simulate_sweep`, also returning what each point hit.

    Returns:
        points: float32 [P, 5] as in :func:`simulate_sweep`.
        hit_ids: int64 [P] box index per point, or GROUND_ID.
    """
    pose = np.asarray(sensor_pose, np.float64)
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        raise ValueError(f"simulate_sweep: sensor_pose must be a finite [4, 4] matrix, got shape {list(pose.shape)}")
    rotation, origin = pose[:3, :3], pose[:3, 3]
    dirs_sensor, rings = beam_directions(config)
    distances, hit_ids = cast_rays(scene, origin, dirs_sensor @ rotation.T, config.max_range)
    noise = np.random.default_rng(seed).normal(0.0, config.range_noise_std, size=distances.shape)
    ranges = distances + noise
    keep = (hit_ids != MISS_ID) & (ranges >= config.min_range) & (ranges <= config.max_range)
    ranges, hit_ids, dirs_sensor, rings = ranges[keep], hit_ids[keep], dirs_sensor[keep], rings[keep]
    reflectivity = np.where(hit_ids >= 0, scene.reflectivity[np.maximum(hit_ids, 0)], scene.ground_reflectivity)
    # Return energy falls with range; the 1/(1 + r/20) law keeps near objects bright.
    intensity = np.clip(255.0 * reflectivity / (1.0 + ranges / 20.0), 0.0, 255.0)
    xyz = dirs_sensor * ranges[:, None]
    points = np.concatenate([xyz, intensity[:, None], rings[:, None].astype(np.float64)], axis=1)
    return points.astype(np.float32), hit_ids


def street_scene(
    seed: int = 0, num_cars: int = 36, num_large: int = 6, num_pedestrians: int = 30, num_cones: int = 20,
    num_poles: int = 40, length: float = 160.0,
) -> LidarScene:
    """A straight street along world +x centred on the origin: cars in lanes, trucks and
    buses, pedestrians on the sidewalks, cones, poles / trees, facades along both sides and
    cross-street buildings. Ground at z = 0. Deterministic from ``seed``.

    Returns:
        The scene; its first num_cars + num_large + num_pedestrians + num_cones boxes are
        the "objects" (in that order), the rest is static clutter.
    """
    rng = np.random.default_rng(seed)
    half = length / 2.0
    lanes = np.array([-5.25, -1.75, 1.75, 5.25])

    def objects(n, lane_ys, size, jitter_y, yaw_choices):
        x = rng.uniform(-half, half, n)
        y = rng.choice(lane_ys, n) + rng.uniform(-jitter_y, jitter_y, n)
        dims = np.asarray(size)[None, :] * rng.uniform(0.9, 1.1, (n, 3))
        yaw = rng.choice(yaw_choices, n) + rng.normal(0.0, 0.05, n)
        return np.column_stack([x, y, dims[:, 2] / 2.0, dims, yaw])

    along = [0.0, np.pi]
    parts = [
        objects(num_cars, lanes, (4.6, 1.9, 1.7), 0.3, along),
        objects(num_large, lanes, (11.0, 2.9, 3.4), 0.2, along),
        objects(num_pedestrians, np.array([-9.0, 9.0]), (0.7, 0.7, 1.75), 1.2, np.linspace(-np.pi, np.pi, 8)),
        objects(num_cones, np.array([-7.3, 7.3]), (0.4, 0.4, 0.9), 0.2, [0.0]),
        objects(num_poles, np.array([-10.8, 10.8]), (0.35, 0.35, 6.0), 0.1, [0.0]),
    ]
    facade_x = np.arange(-half, half, 20.0) + 10.0
    facade_h = rng.uniform(6.0, 20.0, (2, len(facade_x)))
    for side, y in enumerate((-15.0, 15.0)):
        parts.append(np.column_stack([
            facade_x, np.full_like(facade_x, y), facade_h[side] / 2.0, np.full_like(facade_x, 18.0),
            np.full_like(facade_x, 4.0), facade_h[side], np.zeros_like(facade_x),
        ]))
    cross = np.array([[-half - 5.0, 0.0, 6.0, 6.0, 34.0, 12.0, 0.0], [half + 5.0, 0.0, 6.0, 6.0, 34.0, 12.0, 0.0],
                      [-half / 2.0, 30.0, 8.0, 30.0, 20.0, 16.0, 0.0], [half / 2.0, -30.0, 8.0, 30.0, 20.0, 16.0, 0.0]])
    parts.append(cross)
    boxes = np.concatenate(parts, axis=0)
    reflectivity = rng.uniform(0.2, 0.9, len(boxes))
    return LidarScene(boxes=boxes, ground_z=0.0, reflectivity=reflectivity)


def _boxes_in_reach(boxes: np.ndarray, origin: np.ndarray, max_range: float) -> np.ndarray:
    """Indices of boxes whose bounding sphere comes within ``max_range`` of ``origin``."""
    radius = 0.5 * np.linalg.norm(boxes[:, 3:6], axis=1)
    dist = np.linalg.norm(boxes[:, :3] - origin[None, :], axis=1)
    return np.flatnonzero(dist - radius <= max_range)


def _ray_box_candidates(origin: np.ndarray, dirs: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(box, ray) pairs whose ray points into the box's azimuth sector and elevation band,
    as seen from the origin: a conservative cull that prunes almost all of the rays x boxes
    product before the exact slab test.

    Args:
        origin: float64 [3]; dirs: float64 [R, 3] unit; boxes: float64 [K, 7].

    Returns:
        box_idx, ray_idx: int64 [Q] each, sorted by box then ray.
    """
    cos, sin = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    signs = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    local = signs[None] * boxes[:, None, 3:5] / 2.0  # [K, 4, 2] footprint corners, box frame
    cx = boxes[:, None, 0] + cos[:, None] * local[..., 0] - sin[:, None] * local[..., 1] - origin[0]
    cy = boxes[:, None, 1] + sin[:, None] * local[..., 0] + cos[:, None] * local[..., 1] - origin[1]
    # Azimuth sector of the footprint: corner angles relative to the centre direction.
    centre_az = np.arctan2(boxes[:, 1] - origin[1], boxes[:, 0] - origin[0])
    offsets = np.remainder(np.arctan2(cy, cx) - centre_az[:, None] + np.pi, 2 * np.pi) - np.pi
    lo, width = centre_az + offsets.min(1), offsets.max(1) - offsets.min(1)
    rel = origin[None, :2] - boxes[:, :2]
    u = np.abs(cos * rel[:, 0] + sin * rel[:, 1]) - boxes[:, 3] / 2
    v = np.abs(-sin * rel[:, 0] + cos * rel[:, 1]) - boxes[:, 4] / 2
    inside = (u <= 0) & (v <= 0)
    # Elevation band, bounded with the nearest / farthest horizontal distance to the footprint.
    d_min = np.sqrt(np.maximum(u, 0) ** 2 + np.maximum(v, 0) ** 2)
    d_max = np.sqrt(cx * cx + cy * cy).max(1)
    z_top = boxes[:, 2] + boxes[:, 5] / 2 - origin[2]
    z_bot = boxes[:, 2] - boxes[:, 5] / 2 - origin[2]
    el_hi = np.arctan2(z_top, np.where(z_top > 0, d_min, d_max))
    el_lo = np.arctan2(z_bot, np.where(z_bot < 0, d_min, d_max))
    ray_az = np.arctan2(dirs[:, 1], dirs[:, 0])
    ray_el = np.arcsin(np.clip(dirs[:, 2], -1.0, 1.0))
    slack = 1e-6  # keeps rays grazing a sector edge in the exact test
    in_az = np.remainder(ray_az[None, :] - lo[:, None] + slack, 2 * np.pi) <= width[:, None] + 2 * slack
    in_el = (ray_el[None, :] >= el_lo[:, None] - slack) & (ray_el[None, :] <= el_hi[:, None] + slack)
    return np.nonzero((in_az | inside[:, None]) & in_el)  # [K, R] mask -> pairs


def _ray_box_distances(origin: np.ndarray, dirs: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Slab-test entry distance of each ray into its paired box (inf where missed or where
    the origin is inside the box, so a sensor never sees the inside of its own vehicle).

    Args:
        origin: float64 [3]; dirs: float64 [Q, 3]; boxes: float64 [Q, 7] (pair q = ray q vs box q).

    Returns:
        float64 [Q].
    """
    cos, sin = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    rel = origin[None, :] - boxes[:, :3]  # [Q, 3]
    # Rotate the origin and the direction into the box frame (rotation by -yaw).
    o_local = np.stack([cos * rel[:, 0] + sin * rel[:, 1], -sin * rel[:, 0] + cos * rel[:, 1], rel[:, 2]], -1)
    d_local = np.stack([cos * dirs[:, 0] + sin * dirs[:, 1], -sin * dirs[:, 0] + cos * dirs[:, 1], dirs[:, 2]], -1)
    half = boxes[:, 3:6] / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d_local
        t1 = (-half - o_local) * inv
        t2 = (half - o_local) * inv
    # 0 * inf (a ray parallel to a slab, starting on its plane) gives NaN: ignore that axis.
    t_near = np.nan_to_num(np.minimum(t1, t2), nan=-np.inf).max(-1)
    t_far = np.nan_to_num(np.maximum(t1, t2), nan=np.inf).min(-1)
    hit = (t_near <= t_far) & (t_near > 0)
    return np.where(hit, t_near, np.inf)
