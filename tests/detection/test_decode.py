"""Decoding CenterHead maps into boxes: a hand-made prediction recovered exactly, the strict
score threshold, the inclusive centre range, top-K per class then over classes, and the
round trip targets -> perfect predictions -> boxes."""

import dataclasses
import math

import pytest
import torch

from sparse3d.data.nuscenes.classes import DETECTION_NAMES
from sparse3d.detection.decode import decode_center_predictions
from sparse3d.detection.heads import (
    REGRESSION_HEADS,
    CenterHeadConfig,
    class_ids_each_head,
)
from sparse3d.detection.targets import BevGrid, center_targets

GRID = BevGrid((-4.0, -4.0, -5.0, 4.0, 4.0, 3.0), (0.125, 0.125, 0.2), 4)  # 16 x 16 cells of 0.5 m
CONFIG = CenterHeadConfig(max_obj_per_sample=10)
IDS = {name: DETECTION_NAMES.index(name) for name in DETECTION_NAMES}


def _blank_preds(batch=1):
    """Predictions with every score ~2e-9 (logit -20) and zero regression."""
    h, w = GRID.shape
    preds = []
    for group in CONFIG.class_names_each_head:
        pred = {name: torch.zeros(batch, c, h, w) for name, c in REGRESSION_HEADS}
        pred["hm"] = torch.full((batch, len(group), h, w), -20.0)
        preds.append(pred)
    return preds


def _place(pred, b, ix, iy, channel, logit, center=(0.0, 0.0), z=0.0, dims=(1.0, 1.0, 1.0), yaw=0.0, vel=(0.0, 0.0)):
    pred["hm"][b, channel, iy, ix] = logit
    pred["center"][b, :, iy, ix] = torch.tensor(center)
    pred["center_z"][b, 0, iy, ix] = z
    pred["dim"][b, :, iy, ix] = torch.tensor(dims).log()
    pred["rot"][b, :, iy, ix] = 2 * torch.tensor([math.cos(yaw), math.sin(yaw)])  # any scale: atan2
    pred["vel"][b, :, iy, ix] = torch.tensor(vel)


def _construction_vehicle_preds():
    preds = _blank_preds()
    _place(preds[1], 0, ix=3, iy=5, channel=1, logit=2.0, center=(0.25, 0.75), z=0.3, dims=(4.0, 2.0, 1.5), yaw=2.0, vel=(1.5, -0.5))
    return preds


def test_a_hand_made_prediction_decodes_to_its_box():
    (sample,) = decode_center_predictions(_construction_vehicle_preds(), GRID, CONFIG)
    assert len(sample) == 6
    assert [len(head.scores) for head in sample] == [0, 1, 0, 0, 0, 0]
    boxes, scores, labels = sample[1]
    # x = (3 + 0.25) * 4 * 0.125 - 4 = -2.375; y = (5 + 0.75) * 0.5 - 4 = -1.125.
    assert boxes[0, :2].tolist() == [-2.375, -1.125]
    expected = torch.tensor([-2.375, -1.125, 0.3, 4.0, 2.0, 1.5, 2.0, 1.5, -0.5])
    torch.testing.assert_close(boxes[0], expected)
    assert scores.tolist() == pytest.approx([1 / (1 + math.exp(-2.0))])
    assert labels.dtype == torch.int64 and labels.tolist() == [IDS["construction_vehicle"]]
    assert boxes.dtype == torch.float32 and boxes.shape == (1, 9)


def test_heading_comes_from_atan2_of_sin_and_cos():
    preds = _blank_preds()
    for i, yaw in enumerate([-3.0, -1.0, 0.5, 3.0]):
        _place(preds[0], 0, ix=2 + 3 * i, iy=8, channel=0, logit=1.0 + i, yaw=yaw)
    boxes = decode_center_predictions(preds, GRID, CONFIG)[0][0].boxes
    torch.testing.assert_close(boxes[:, 6], torch.tensor([3.0, 0.5, -1.0, -3.0]))  # by descending score


def test_score_threshold_is_strict():
    preds = _construction_vehicle_preds()
    score = decode_center_predictions(preds, GRID, dataclasses.replace(CONFIG, score_thresh=0.0))[0][1].scores[0].item()
    just_below = torch.nextafter(torch.tensor(score), torch.tensor(0.0)).item()  # one float32 step
    assert len(decode_center_predictions(preds, GRID, dataclasses.replace(CONFIG, score_thresh=score))[0][1].scores) == 0
    assert len(decode_center_predictions(preds, GRID, dataclasses.replace(CONFIG, score_thresh=just_below))[0][1].scores) == 1


@pytest.mark.parametrize(("limits", "kept"), [
    ((-61.2, -61.2, -10.0, -2.375, 61.2, 10.0), True),  # x on the upper bound
    ((-2.375, -61.2, -10.0, 61.2, 61.2, 10.0), True),  # x on the lower bound
    ((-61.2, -61.2, -10.0, -2.5, 61.2, 10.0), False),
    ((-2.25, -61.2, -10.0, 61.2, 61.2, 10.0), False),
    ((-61.2, -1.0, -10.0, 61.2, 61.2, 10.0), False),  # y = -1.125 below
    ((-61.2, -61.2, 0.5, 61.2, 61.2, 10.0), False),  # z = 0.3 below
])
def test_centre_range_filter_includes_its_bounds(limits, kept):
    config = dataclasses.replace(CONFIG, post_center_range=limits)
    assert len(decode_center_predictions(_construction_vehicle_preds(), GRID, config)[0][1].scores) == int(kept)


def test_top_k_per_class_then_over_classes():
    preds = _blank_preds()
    for i, logit in enumerate([1.0, 2.0, 3.0, 4.0, 5.0]):
        _place(preds[0], 0, ix=i, iy=0, channel=0, logit=logit)
    for i, logit in enumerate([4.0, 3.0, 0.5]):  # trucks
        _place(preds[1], 0, ix=i, iy=1, channel=0, logit=logit)
    for i, logit in enumerate([3.5, 0.2]):  # construction vehicles
        _place(preds[1], 0, ix=i, iy=2, channel=1, logit=logit)
    sample = decode_center_predictions(preds, GRID, dataclasses.replace(CONFIG, max_obj_per_sample=3))[0]
    cars, group = sample[0], sample[1]
    assert cars.scores.tolist() == pytest.approx([1 / (1 + math.exp(-v)) for v in (5.0, 4.0, 3.0)])
    assert cars.boxes[:, 0].tolist() == [(i + 0.0) * 0.5 - 4 for i in (4, 3, 2)]
    assert group.labels.tolist() == [IDS["truck"], IDS["construction_vehicle"], IDS["truck"]]
    assert group.scores.tolist() == pytest.approx([1 / (1 + math.exp(-v)) for v in (4.0, 3.5, 3.0)])
    # K larger than the map is capped at its 256 cells: every cell above the threshold comes back.
    many = decode_center_predictions(preds, GRID, dataclasses.replace(CONFIG, max_obj_per_sample=1000))[0]
    assert [len(h.scores) for h in many][:2] == [5, 5]


def test_mismatched_predictions_are_refused():
    preds = _blank_preds()
    with pytest.raises(ValueError, match="expected 6 heads"):
        decode_center_predictions(preds[:5], GRID, CONFIG)
    with pytest.raises(ValueError, match="grid"):
        decode_center_predictions(preds, BevGrid((-8.0, -8.0, -5.0, 8.0, 8.0, 3.0), (0.125, 0.125, 0.2), 4), CONFIG)


def _perfect_preds(targets):
    """Logits +10 at every peak (heatmap 1) and -10 elsewhere; each object's code at its cell."""
    h, w = GRID.shape
    preds = []
    for target in targets:
        batch = target.heatmap.shape[0]
        code_maps = torch.zeros(batch, 10, h * w)
        for b in range(batch):
            slots = target.mask[b]
            code_maps[b][:, target.inds[b, slots]] = target.boxes[b, slots].T
        pred = dict(zip([n for n, _ in REGRESSION_HEADS], code_maps.reshape(batch, 10, h, w).split([c for _, c in REGRESSION_HEADS], 1)))
        pred["hm"] = torch.where(target.heatmap == 1, 10.0, -10.0)
        preds.append(pred)
    return preds


def test_targets_as_perfect_predictions_round_trip_to_the_boxes():
    nan = float("nan")
    gt_boxes = [
        torch.tensor([
            [1.3, -0.9, 0.4, 4.5, 1.9, 1.6, 0.5, 1.0, -2.0],  # car
            [-2.2, 2.7, -0.3, 7.0, 2.5, 3.0, -2.9, 0.0, 0.0],  # truck
            [3.1, 3.3, 0.1, 0.7, 0.6, 1.8, 3.1, nan, nan],  # pedestrian, unknown velocity
            [-3.6, -3.2, 0.0, 2.5, 0.5, 1.0, -1.2, 0.0, 0.0],  # barrier
        ]),
        torch.tensor([[0.2, 0.2, 1.0, 6.0, 2.8, 3.2, 1.0, 0.5, 0.5]]),  # construction vehicle
    ]
    gt_labels = [torch.tensor([IDS["car"], IDS["truck"], IDS["pedestrian"], IDS["barrier"]]), torch.tensor([IDS["construction_vehicle"]])]
    targets = center_targets(gt_boxes, gt_labels, GRID, class_ids_each_head(CONFIG))
    decoded = decode_center_predictions(_perfect_preds(targets), GRID, CONFIG)
    for b, sample in enumerate(decoded):
        boxes = torch.cat([head.boxes for head in sample])
        labels = torch.cat([head.labels for head in sample])
        order = boxes[:, 0].argsort()
        expected = gt_boxes[b].nan_to_num(nan=0.0)
        expected_order = expected[:, 0].argsort()
        torch.testing.assert_close(boxes[order], expected[expected_order], rtol=1e-5, atol=1e-5)
        assert labels[order].tolist() == gt_labels[b][expected_order].tolist()
        for head in sample:
            assert (head.scores[:-1] >= head.scores[1:]).all()
