import numpy as np
import pytest

from sparse3d.synthetic.lidar import (
    GROUND_ID,
    MISS_ID,
    LidarScene,
    SpinningLidarConfig,
    beam_directions,
    cast_rays,
    simulate_sweep,
    simulate_sweep_with_hits,
    simulate_sweeps,
    street_scene,
)


def _brute_force_hits(scene, origin, dirs, max_range):
    """Ray by ray, box by box slab test in plain numpy: the oracle for cast_rays."""
    dist = np.full(len(dirs), np.inf)
    ids = np.full(len(dirs), MISS_ID)
    for r, d in enumerate(dirs):
        if scene.ground_z is not None and d[2] < 0:
            dist[r], ids[r] = (scene.ground_z - origin[2]) / d[2], GROUND_ID
        for b, (x, y, z, dx, dy, dz, yaw) in enumerate(scene.boxes):
            c, s = np.cos(yaw), np.sin(yaw)
            rel = origin - np.array([x, y, z])
            o = np.array([c * rel[0] + s * rel[1], -s * rel[0] + c * rel[1], rel[2]])
            v = np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1], d[2]])
            half = np.array([dx, dy, dz]) / 2
            with np.errstate(divide="ignore", invalid="ignore"):
                t1, t2 = (-half - o) / v, (half - o) / v
            near, far = np.nanmax(np.minimum(t1, t2)), np.nanmin(np.maximum(t1, t2))
            if near <= far and 0 < near < dist[r]:
                dist[r], ids[r] = near, b
    miss = dist > max_range
    return np.where(miss, np.inf, dist), np.where(miss, MISS_ID, ids)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cast_rays_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    boxes = np.column_stack([rng.uniform(-15, 15, (12, 2)), rng.uniform(0.5, 2, 12), rng.uniform(0.5, 5, (12, 3)),
                             rng.uniform(-np.pi, np.pi, 12)])
    scene = LidarScene(boxes=boxes, ground_z=-0.2)
    config = SpinningLidarConfig(num_beams=8, azimuth_steps=90)
    dirs, _ = beam_directions(config)
    origin = np.array([0.3, -0.4, 1.8])
    dist, ids = cast_rays(scene, origin, dirs, 40.0)
    ref_dist, ref_ids = _brute_force_hits(scene, origin, dirs, 40.0)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12)


def test_analytic_wall_and_ground_ranges():
    # Beams at -10, 0, +10 degrees; 4 firings at azimuth 0, 90, 180, 270 degrees.
    config = SpinningLidarConfig(num_beams=3, min_elevation_deg=-10, max_elevation_deg=10, azimuth_steps=4,
                                 range_noise_std=0.0, min_range=0.1)
    wall = np.array([[10.0, 0.0, 0.0, 1.0, 4.0, 50.0, 0.0]])  # front face at x = 9.5
    scene = LidarScene(boxes=wall, ground_z=-2.0)
    points, hits = simulate_sweep_with_hits(scene, np.eye(4), config)
    ranges = np.linalg.norm(points[:, :3], axis=1)
    forward = np.abs(points[:, 1]) < 1e-6
    forward &= points[:, 0] > 0
    assert set(hits[forward]) == {0}
    np.testing.assert_allclose(points[forward, 0], 9.5, atol=1e-5)  # every beam hits the tall wall at x = 9.5
    ground = hits == GROUND_ID
    assert ground.sum() == 3  # the three down-looking beams at azimuth 90, 180, 270
    np.testing.assert_allclose(ranges[ground], 2.0 / np.sin(np.deg2rad(10.0)), rtol=1e-6)
    np.testing.assert_allclose(points[ground, 2], -2.0, atol=1e-5)
    np.testing.assert_array_equal(points[forward, 4], [0, 1, 2])


def test_sensor_pose_is_applied():
    config = SpinningLidarConfig(num_beams=3, min_elevation_deg=-10, max_elevation_deg=10, azimuth_steps=4,
                                 range_noise_std=0.0, min_range=0.1)
    scene = LidarScene(boxes=np.array([[0.0, 10.0, 0.0, 4.0, 1.0, 50.0, 0.0]]), ground_z=None)
    pose = np.eye(4)
    pose[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # sensor +x looks along world +y
    pose[:3, 3] = [0.0, 2.0, 0.0]
    points = simulate_sweep(scene, pose, config)
    assert len(points) == 3
    np.testing.assert_allclose(points[:, 0], 7.5, rtol=1e-6)  # the wall face is 7.5 m ahead of the sensor
    ranges = np.linalg.norm(points[:, :3], axis=1)
    np.testing.assert_allclose(ranges, 7.5 / np.cos(np.deg2rad([-10, 0, 10])), rtol=1e-6)


def test_sweep_is_deterministic_and_seeded():
    scene = street_scene(seed=3)
    pose = np.eye(4)
    pose[2, 3] = 1.84
    a = simulate_sweep(scene, pose, seed=5)
    b = simulate_sweep(street_scene(seed=3), pose, seed=5)
    np.testing.assert_array_equal(a, b)
    c = simulate_sweep(scene, pose, seed=6)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.shape[1] == 5
    ranges = np.linalg.norm(a[:, :3], axis=1)
    assert ranges.max() <= 70.0 + 1e-3 and ranges.min() >= 1.0 - 1e-3
    assert 15_000 < len(a) < 34_688
    assert set(np.unique(a[:, 4])) <= set(range(32))


def test_bad_scene_is_rejected():
    with pytest.raises(ValueError, match="positive extents"):
        LidarScene(boxes=np.array([[0, 0, 0, 1, 0, 1, 0.0]]))
    with pytest.raises(ValueError, match="sensor_pose"):
        simulate_sweep(street_scene(), np.eye(3))


def test_accumulated_sweeps_land_in_the_last_frame():
    # A static wall seen from three poses 2 m apart: every sweep's wall points lie on the
    # wall's face in the last sweep's frame, and each carries its sweep's time lag.
    config = SpinningLidarConfig(num_beams=3, min_elevation_deg=-10, max_elevation_deg=10, azimuth_steps=4,
                                 range_noise_std=0.0, min_range=0.1)
    wall = np.array([[20.0, 0.0, 0.0, 1.0, 4.0, 50.0, 0.0]])  # face at x = 19.5
    points = simulate_sweeps(LidarScene(boxes=wall, ground_z=None), num_sweeps=3, sweep_dt=0.05, ego_step=2.0,
                             sensor_height=1.5, config=config)
    forward = np.abs(points[:, 1]) < 1e-6
    np.testing.assert_allclose(points[forward, 0], 19.5, atol=1e-4)
    np.testing.assert_allclose(sorted(set(np.round(points[forward, 4], 6))), [0.0, 0.05, 0.1])
    # One sweep is simulate_sweep at the sensor height, ring column replaced by lag 0.
    single = simulate_sweeps(LidarScene(boxes=wall, ground_z=-1.5), num_sweeps=1, sensor_height=1.5, config=config)
    pose = np.eye(4)
    pose[2, 3] = 1.5
    expected = simulate_sweep(LidarScene(boxes=wall, ground_z=-1.5), pose, config)
    np.testing.assert_array_equal(single[:, :4], expected[:, :4])
    assert (single[:, 4] == 0).all()
    with pytest.raises(ValueError, match="num_sweeps must be >= 1"):
        simulate_sweeps(LidarScene(boxes=wall, ground_z=None), num_sweeps=0)
