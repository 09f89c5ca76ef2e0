"""The official devkit's detection-eval unit tests that need no real data
(``eval/detection/tests/test_utils.py`` and ``test_algo.py``), re-run against our
implementation: the same cases and expected values, our functions."""

import random

import numpy as np
import pytest

from sparse3d.data.nuscenes.classes import (
    ATTRIBUTE_NAMES,
    CLASS_ATTRIBUTES,
    DETECTION_NAMES,
)
from sparse3d.detection.nuscenes.box_set import EvalBoxSet
from sparse3d.detection.nuscenes.eval.config import TP_METRICS, DetectionConfig
from sparse3d.detection.nuscenes.eval.matching import MetricCurves, accumulate_class
from sparse3d.detection.nuscenes.eval.metrics import calc_ap, calc_tp, summarize
from sparse3d.detection.nuscenes.eval.tp_errors import (
    angle_diff,
    attribute_accuracy,
    center_distance,
    cummean,
    scale_iou,
    velocity_l2,
    yaw_diff,
)


def _axis_angle(axis, angle):
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    return np.array([np.cos(angle / 2), *(np.sin(angle / 2) * axis)])


def _iou(a, b):
    return float(scale_iou(np.array([a], float), np.array([b], float))[0])


def _yaw_diff(a, b, period=2 * np.pi):
    return float(yaw_diff(np.array([a]), np.array([b]), period)[0])


# ---------------------------------------------------------------- test_utils.py

def test_scale_iou():
    assert _iou((4, 4, 4), (4, 4, 4)) == 1
    assert _iou((2, 2, 2), (1, 1, 1)) == 1 / 8
    assert _iou((1, 1, 1), (2, 2, 2)) == 1 / 8
    assert _iou((0.96, 0.37, 0.69), (0.32, 0.01, 0.39)) == pytest.approx(0.00509204, abs=1e-7)
    for a, b in (((0, 4, 4), (4, 4, 4)), ((0, 4, 4), (4, 0, 4)), ((4, 4, 4), (4, -5, 4))):
        with pytest.raises(ValueError):
            _iou(a, b)


def test_yaw_diff():
    assert _yaw_diff(_axis_angle((0, 0, 1), np.pi / 8), _axis_angle((0, 0, 1), np.pi / 8)) == pytest.approx(0)
    # A rotation about y has heading 0, so it differs from a pi/8 yaw by pi/8.
    assert _yaw_diff(_axis_angle((0, 0, 1), np.pi / 8), _axis_angle((0, 1, 0), np.pi / 8)) == pytest.approx(np.pi / 8)
    q0 = _axis_angle((0, 0, 1), 0)
    for yaw_in in np.linspace(-10, 10, 100):
        yaw_true = yaw_in % (2 * np.pi)
        if yaw_true > np.pi:
            yaw_true = 2 * np.pi - yaw_true
        assert _yaw_diff(q0, _axis_angle((0, 0, 1), yaw_in)) == pytest.approx(yaw_true, abs=1e-7)
    assert _yaw_diff(_axis_angle((0, 0, 1), 1.1 * np.pi), _axis_angle((0, 0, 1), 0.9 * np.pi)) == \
        pytest.approx(0.2 * np.pi)


@pytest.mark.parametrize("a, b, period, expected", [
    (90, 0, 360, 90), (90, 0, 180, 90), (90, 0, 90, 0), (0, 90, 90, 0), (0, 180, 180, 0), (0, 180, 360, 180),
    (0, 180 + 360 * 200, 360, 180),
])
def test_angle_diff(a, b, period, expected):
    rad = np.deg2rad
    assert abs(float(angle_diff(rad(a), rad(b), rad(period)))) == pytest.approx(rad(expected), abs=1e-7)


@pytest.mark.parametrize("a, b", [((4, 4, 5), (4, 4, 5)), ((4, 4, 4), (3, 3, 3)), ((-1, -1, -1), (1, 1, 1)),
                                  ((4.2, 2.8, 4.2), (-1.45, 3.5, 3.9))])
def test_center_distance(a, b):
    expected = np.sqrt((b[0] - a[0]) ** 2 + (b[1] - a[1]) ** 2)
    assert float(center_distance(np.array([a], float), np.array([b], float))[0]) == pytest.approx(expected)


@pytest.mark.parametrize("a, b", [((4, 4), (4, 4)), ((-1, -1), (1, 1)), ((8.2, 1.4), (6.4, -9.4))])
def test_velocity_l2(a, b):
    expected = np.sqrt((b[0] - a[0]) ** 2 + (b[1] - a[1]) ** 2)
    assert float(velocity_l2(np.array([a], float), np.array([b], float))[0]) == pytest.approx(expected)


@pytest.mark.parametrize("x, expected", [
    ((np.nan, 5), (0, 5)), ((5, 2, np.nan), (5, 3.5, 3.5)), ((np.nan, 4.5, np.nan), (0, 4.5, 4.5)),
    ((np.nan,) * 4, (1, 1, 1, 1)), ((np.nan,), (1,)), ((4,), (4.0,)),
    ((np.nan, 3.58, 2.14, np.nan, 9, 1.48, np.nan), (0, 3.58, 2.86, 2.86, 4.906666, 4.05, 4.05)),
])
def test_cummean(x, expected):
    np.testing.assert_array_almost_equal(cummean(np.array(x, float)), np.array(expected))


def test_attr_acc():
    parked, moving = ATTRIBUTE_NAMES.index("vehicle.parked"), ATTRIBUTE_NAMES.index("vehicle.moving")
    assert attribute_accuracy(np.array([parked]), np.array([parked]))[0] == 1.0
    assert attribute_accuracy(np.array([parked]), np.array([moving]))[0] == 0.0
    assert np.isnan(attribute_accuracy(np.array([-1]), np.array([parked]))[0])


# ---------------------------------------------------------------- test_algo.py

_DEFAULTS = {"trans": (0, 0, 0), "size": (1, 1, 1), "rot": (0, 0, 0, 0), "vel": (0, 0), "attr": "vehicle.parked",
             "score": -1.0, "name": "car"}


def _box_set(samples: dict[str, list[dict]], order: list[str]) -> EvalBoxSet:
    rows = [(order.index(token), {**_DEFAULTS, **box}) for token, boxes in samples.items() for box in boxes]
    if not rows:
        return EvalBoxSet.empty()
    return EvalBoxSet(
        sample=np.array([s for s, _ in rows], np.int64),
        label=np.array([DETECTION_NAMES.index(b["name"]) for _, b in rows], np.int64),
        translation=np.array([b["trans"] for _, b in rows], float), size=np.array([b["size"] for _, b in rows], float),
        rotation=np.array([b["rot"] for _, b in rows], float), velocity=np.array([b["vel"] for _, b in rows], float),
        attribute=np.array([ATTRIBUTE_NAMES.index(b["attr"]) if b["attr"] else -1 for _, b in rows], np.int64),
        score=np.array([b["score"] for _, b in rows], float), num_pts=np.full(len(rows), -1, np.int64),
    )


def _metric_data(gts, preds, name, dist_th) -> MetricCurves:
    order = list(dict.fromkeys([*gts, *preds]))
    period = np.pi if name == "barrier" else 2 * np.pi
    return accumulate_class(_box_set(gts, order), _box_set(preds, order), DETECTION_NAMES.index(name), (dist_th,),
                            period)[dist_th]


def _mock_results(nsamples, ngt, npred, name):
    """The devkit's random fixture, consuming `random` and `np.random` in the same order."""
    def random_attr():
        rel = CLASS_ATTRIBUTES[name]
        return rel[np.random.randint(0, len(rel))] if rel else ""

    def boxes(n, spread):
        out = []
        for _ in range(n):
            xy = tuple(np.random.rand(2) * spread)
            box = {"trans": (xy[0], xy[1], 0.0), "size": tuple(np.random.rand(3) * 4),
                   "rot": tuple(np.random.rand(4)), "vel": tuple(np.random.rand(3)[:2] * 4), "name": name,
                   "score": random.random(), "attr": random_attr()}
            random.random()  # the devkit draws a random ego translation here
            out.append(box)
        return out

    gt = {str(s): boxes(ngt, 15) for s in range(nsamples)}
    pred = {str(s): boxes(npred, 10) for s in range(nsamples)}
    return gt, pred


def test_nd_score():
    """The devkit's golden value for its random fixture (it matches at 2 m for every threshold)."""
    random.seed(42)
    np.random.seed(42)
    config = DetectionConfig()
    curves = {}
    for name in config.class_names:
        gt, pred = _mock_results(30, 3, 25, name)
        md = _metric_data(gt, pred, name, 2)
        curves.update({(name, th): md for th in config.dist_ths})
    assert summarize(curves, config)["nd_score"] == pytest.approx(0.08606662159639042, abs=1e-15)


def _random_md() -> MetricCurves:
    n = 101
    return MetricCurves(np.linspace(0, 1, n), np.random.random(n), np.linspace(0, 1, n)[::-1],
                        *(np.random.random(n) for _ in range(5)))


def test_calc_tp():
    np.random.seed(42)
    assert calc_tp(_random_md(), min_recall=1, metric_name="trans_err") == 1.0


def test_calc_ap():
    np.random.seed(42)
    md = _random_md()
    for min_recall, min_precision in ((-0.5, 0.4), (0.5, -0.8), (0.7, 1), (1.2, 0)):
        with pytest.raises(ValueError):
            calc_ap(md, min_recall, min_precision)


_CAR1 = {"trans": (1, 1, 1), "name": "car", "score": 1.0}
_CAR2 = {"trans": (3, 3, 1), "name": "car", "score": 0.7}
_BICYCLE1 = {"trans": (5, 5, 1), "name": "bicycle", "score": 1.0}


def _check_ap(gts, preds, target_ap, name="car", dist_th=2.0):
    ap = calc_ap(_metric_data(gts, preds, name, dist_th), min_recall=0.1, min_precision=0.1)
    assert abs(ap - target_ap) <= 0.01


def test_ap_no_data():
    _check_ap({"sample1": []}, {"sample1": [_CAR1]}, 0.0)
    _check_ap({"sample1": [_CAR1]}, {"sample1": []}, 0.0)
    _check_ap({"sample1": []}, {"sample1": []}, 0.0)


def test_ap_one_sample():
    _check_ap({"sample1": [_CAR1]}, {"sample1": [_CAR1]}, 1.0)
    _check_ap({"sample1": [_CAR1, _CAR2]}, {"sample1": [_CAR1]}, 0.4 / 0.9)
    _check_ap({"sample1": [_CAR1]}, {"sample1": [_CAR1, _CAR2]}, 1.0)
    _check_ap({"sample1": [_CAR2]}, {"sample1": [_CAR1, _CAR2]}, ((0.8 * 0.4) / 2) / (0.9 * 0.9))
    _check_ap({"sample1": [_CAR1]}, {"sample1": [_CAR1, _BICYCLE1]}, 1.0)


def test_ap_two_samples():
    _check_ap({"sample1": [_CAR1], "sample2": [_CAR2]}, {"sample1": [_CAR1], "sample2": [_CAR2]}, 1.0)
    _check_ap({"sample1": [_CAR1], "sample2": []}, {"sample1": [_CAR1], "sample2": []}, 1.0)
    _check_ap({"sample1": [_CAR1], "sample2": [_CAR2]}, {"sample1": [_CAR1], "sample2": []}, 0.4 / 0.9)


def _check_tp(gts, preds, target_error, metric_name, name="car"):
    error = calc_tp(_metric_data(gts, preds, name, 2.0), min_recall=0.1, metric_name=metric_name)
    assert abs(error - target_error) <= 0.01, (metric_name, error, target_error)


def test_tp_no_positives():
    car1, car2 = {"trans": (1, 1, 1), "score": 1.0}, {"trans": (3, 3, 1), "score": 1.0}
    bike1 = {"trans": (1, 1, 1), "score": 1.0, "name": "bicycle", "attr": "cycle.with_rider"}
    for metric in TP_METRICS:
        _check_tp({"sample1": [car1]}, {"sample1": [car2]}, 1.0, metric)
        _check_tp({"sample1": [car1]}, {"sample1": [bike1]}, 1.0, metric)


def test_tp_perfect():
    car1, car2 = {"trans": (1, 1, 1), "score": 1.0}, {"trans": (1, 1, 1), "score": 0.3}
    for metric in TP_METRICS:
        _check_tp({"sample1": [car1]}, {"sample1": [car1]}, 0.0, metric)
        _check_tp({"sample1": [car1]}, {"sample1": [car2]}, 0.0, metric)


_GT1 = {"trans": (1, 1, 1)}
_GT2 = {"trans": (10, 10, 1), "size": (2, 2, 2)}
_GT3 = {"trans": (20, 20, 1), "size": (2, 4, 2)}
_PRED1 = {"trans": (1, 1, 1), "score": 1.0}
_PRED2 = {"trans": (11, 10, 1), "size": (2, 2, 2), "score": 0.9}
_PRED3 = {"trans": (100, 10, 1), "size": (2, 2, 2), "score": 0.8}
_PRED4 = {"trans": (20, 20, 1), "size": (2, 4, 2), "score": 0.7}
_PRED5 = {"trans": (21, 20, 1), "size": (2, 4, 2), "score": 0.7}


def test_tp_one_img():
    _check_tp({"sample1": [_GT2]}, {"sample1": [_PRED2]}, 1, "trans_err")
    target = ((0 + 0) / 2 + (0 + 0.5) / 2) / (2 * 0.9)
    _check_tp({"sample1": [_GT1, _GT2]}, {"sample1": [_PRED1, _PRED2]}, target, "trans_err")
    _check_tp({"sample1": [_GT1, _GT2]}, {"sample1": [_PRED1, _PRED2, _PRED3]}, target, "trans_err")
    target = ((0 + 0) / 2 + (0 + 0.5) / 2 + (0.5 + 0.33) / 2) / (3 * 0.9)  # piecewise linear, 3 segments
    _check_tp({"sample1": [_GT1, _GT2, _GT3]}, {"sample1": [_PRED1, _PRED2, _PRED4]}, target, "trans_err")
    _check_tp({"sample1": [_GT2, _GT3]}, {"sample1": [_PRED2, _PRED5]}, 1.0, "trans_err")


def test_tp_two_imgs():
    _check_tp({"sample1": [_GT2]}, {"sample1": [_PRED2]}, 1, "trans_err")
    target = ((0 + 0) / 2 + (0 + 0.5) / 2) / (2 * 0.9)
    _check_tp({"sample1": [_GT1], "sample2": [_GT2]}, {"sample1": [_PRED1], "sample2": [_PRED2]}, target, "trans_err")
    _check_tp({"sample1": [_GT1], "sample2": [_GT2], "sample3": []},
              {"sample1": [_PRED1], "sample2": [_PRED2, _PRED3], "sample3": []}, target, "trans_err")
    # The devkit's two-image case uses a pred4 at (21, 20, 1), i.e. our _PRED5.
    _check_tp({"sample1": [_GT2, _GT3], "sample2": [_GT3]}, {"sample1": [_PRED2], "sample2": [_PRED5]}, 1.0,
              "trans_err")
