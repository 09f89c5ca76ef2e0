"""The eval's box filters on hand-made cases: strict class ranges, empty boxes, bike racks."""

import numpy as np

from sparse3d.data.nuscenes.classes import DETECTION_NAMES
from sparse3d.detection.nuscenes.box_set import EvalBoxSet
from sparse3d.detection.nuscenes.eval.config import DetectionConfig
from sparse3d.detection.nuscenes.eval.filters import ego_distances, filter_boxes
from sparse3d.detection.nuscenes.eval.ground_truth import BikeRacks
from sparse3d.geometry.rotations import yaw_to_quaternion


def _boxes(rows):
    """rows: (sample, class name, (x, y, z), num_pts)."""
    n = len(rows)
    return EvalBoxSet(
        sample=np.array([r[0] for r in rows]), label=np.array([DETECTION_NAMES.index(r[1]) for r in rows]),
        translation=np.array([r[2] for r in rows], float), size=np.ones((n, 3)),
        rotation=np.tile([1.0, 0, 0, 0], (n, 1)), velocity=np.zeros((n, 2)), attribute=np.full(n, -1),
        score=np.full(n, 0.5), num_pts=np.array([r[3] for r in rows]),
    )


def _kept(boxes, racks=None, ego=((10.0, 20.0, 5.0), (0.0, 0.0, 0.0))):
    racks = racks or BikeRacks(np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 4)))
    kept = filter_boxes(boxes, np.array(ego, float), racks, DetectionConfig())
    return [tuple(t) for t in kept.translation]


def test_range_is_strict_xy_and_per_predicted_class():
    ego = (10.0, 20.0, 5.0)  # z of the ego is ignored: the distance is xy only
    rows = [(0, "car", (10 + 50.0, 20, 0), 5), (0, "car", (10 + 49.999, 20, 0), 5),
            (0, "pedestrian", (10, 20 + 40.0, 0), 5), (0, "pedestrian", (10, 20 - 39.5, 0), 5),
            (0, "barrier", (10 + 18.0, 20 + 24.0, 100.0), 5), (0, "traffic_cone", (10 + 18.0, 20 + 23.9, 0), 5)]
    boxes = _boxes(rows)
    expected = [50, 49.999, 40, 39.5, 30, np.hypot(18, 23.9)]
    np.testing.assert_allclose(ego_distances(boxes, np.array([ego, ego])), expected)
    assert _kept(boxes) == [rows[1][2], rows[3][2], rows[5][2]]


def test_only_exactly_zero_points_are_dropped():
    rows = [(1, "car", (1, 0, 0), 0), (1, "car", (2, 0, 0), 1), (1, "car", (3, 0, 0), -1)]
    assert _kept(_boxes(rows)) == [(2, 0, 0), (3, 0, 0)]


def test_bike_rack_removes_cycles_whose_centre_is_inside():
    rack_yaw = np.pi / 2  # 4 m long rack along world y, 1 m wide, 1.2 m high, centred at (5, 5, 0.6)
    racks = BikeRacks(sample=np.array([0]), translation=np.array([[5.0, 5.0, 0.6]]), size=np.array([[1.0, 4.0, 1.2]]),
                      rotation=yaw_to_quaternion(np.array([rack_yaw])))
    rows = [
        (0, "bicycle", (5.0, 6.5, 0.6), 3),     # inside
        (0, "motorcycle", (5.5, 7.0, 1.2), 3),  # on a corner: bounds are inclusive
        (0, "bicycle", (5.0, 7.2, 0.6), 3),     # beyond the rack's end
        (0, "bicycle", (5.0, 5.0, 1.5), 3),     # above it: the test is 3D
        (0, "car", (5.0, 5.0, 0.6), 3),         # other classes are never removed
        (1, "bicycle", (5.0, 5.0, 0.6), 3),     # a rack only counts in its own sample
    ]
    assert _kept(_boxes(rows), racks) == [rows[i][2] for i in (2, 3, 4, 5)]
