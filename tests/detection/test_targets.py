"""CenterPoint targets: the BEV grid, OpenPCDet's Gaussian radius (CornerNet quirk included),
Gaussian stamping, task-group routing and the 10-value regression code, worked by hand.

The test grid has 0.5 m cells (voxel 0.125 m, stride 4) over [-4, 4] m: 16 x 16 cells, so
most cell coordinates are exact in float32.
"""

import math

import pytest
import torch

from sparse3d.data.nuscenes.classes import DETECTION_NAMES
from sparse3d.detection.heads import CenterHeadConfig, class_ids_each_head
from sparse3d.detection.targets import (
    BOX_CODE_SIZE,
    BevGrid,
    box_codes,
    center_targets,
    draw_gaussian,
    gaussian_radius,
)

GRID = BevGrid((-4.0, -4.0, -5.0, 4.0, 4.0, 3.0), (0.125, 0.125, 0.2), 4)
HEADS = class_ids_each_head(CenterHeadConfig())  # the six nuScenes groups, global ids
CAR, TRUCK, CONSTRUCTION, PEDESTRIAN = (DETECTION_NAMES.index(n) for n in ("car", "truck", "construction_vehicle", "pedestrian"))


def _box(x, y, z=0.0, dx=2.0, dy=1.0, dz=1.5, yaw=0.0, vx=0.0, vy=0.0):
    return [x, y, z, dx, dy, dz, yaw, vx, vy]


def _targets(boxes, labels, **kwargs):
    return center_targets([torch.tensor(boxes, dtype=torch.float32).reshape(-1, 9)],
                          [torch.tensor(labels, dtype=torch.int64)], GRID, HEADS, **kwargs)


def test_grid_shape_is_derived_from_range_voxel_and_stride():
    assert BevGrid((-54.0, -54.0, -5.0, 54.0, 54.0, 3.0), (0.075, 0.075, 0.2), 8).shape == (180, 180)
    assert GRID.shape == (16, 16)
    # (H, W) = (cells along y, cells along x); a partial cell counts (ceil), as strided convs give.
    assert BevGrid((-4.0, -2.0, 0.0, 4.0, 2.0, 1.0), (0.5, 0.5, 1.0), 2).shape == (4, 8)
    assert BevGrid((0.0, 0.0, 0.0, 10.0, 10.0, 1.0), (1.0, 1.0, 1.0), 4).shape == (3, 3)
    with pytest.raises(ValueError):
        BevGrid((0.0, 0.0, 0.0, 10.0, 10.0, 1.0), (1.0, 1.0, 1.0), 0)


def test_grid_cells_and_metres_are_inverse():
    xy = torch.tensor([[-4.0, -4.0], [1.25, -0.75], [3.75, 4.0]])
    cells = GRID.cells(xy)
    torch.testing.assert_close(cells, torch.tensor([[0.0, 0.0], [10.5, 6.5], [15.5, 16.0]]), rtol=0, atol=0)
    torch.testing.assert_close(GRID.metres(cells), xy, rtol=0, atol=0)
    torch.testing.assert_close(GRID.lengths_in_cells(torch.tensor([2.0, 1.0])), torch.tensor([4.0, 2.0]))


def test_gaussian_radius_by_hand_keeps_the_cornernet_quirk():
    # w = h = 10 cells, o = 0.1: s = 20, A = 100.
    #   r1 = (20 + sqrt(400 - 4 * 100 * 0.9 / 1.1)) / 2 = 14.264
    #   r2 = (40 + sqrt(1600 - 16 * 0.9 * 100)) / 2    = 26.325
    #   r3 = (-4 + sqrt(16 + 16 * 0.1 * 0.9 * 100)) / 2 = (-4 + sqrt(160)) / 2 = 4.32456
    # The textbook root of r3's quadratic, (4 + sqrt(160)) / (2 * 0.4) = 20.81, is not used.
    # w = h = 4: r3 = (-1.6 + sqrt(2.56 + 23.04)) / 2 = 1.72982.
    # w = 4, h = 2: r3 = (-1.2 + sqrt(1.44 + 11.52)) / 2 = (-1.2 + 3.6) / 2 = 1.2.
    r = gaussian_radius(torch.tensor([10.0, 4.0, 4.0]), torch.tensor([10.0, 4.0, 2.0]), 0.1)
    torch.testing.assert_close(r, torch.tensor([(-4 + math.sqrt(160)) / 2, (-1.6 + math.sqrt(25.6)) / 2, 1.2]))
    # Symmetric in width and height.
    torch.testing.assert_close(gaussian_radius(torch.tensor([2.0]), torch.tensor([4.0]), 0.1), torch.tensor([1.2]))
    # o = 0.7, w = h = 10: r1 = 19.075, r2 = 36.73, r3 = (-28 + sqrt(784 + 336)) / 2 = 2.7330.
    torch.testing.assert_close(gaussian_radius(torch.tensor([10.0]), torch.tensor([10.0]), 0.7),
                               torch.tensor([(-28 + math.sqrt(1120)) / 2]))


def test_draw_gaussian_values_at_offsets():
    # radius 2: sigma = 5 / 6, value exp(-(dx^2 + dy^2) * 36 / 50) = exp(-0.72 d^2).
    heatmap = draw_gaussian(torch.zeros(9, 9), (4, 3), 2)  # ix 4, iy 3
    assert heatmap[3, 4] == 1.0 and heatmap.max() == 1.0
    assert heatmap[3, 5].item() == pytest.approx(math.exp(-0.72))  # dx = 1
    assert heatmap[4, 4].item() == pytest.approx(math.exp(-0.72))  # dy = 1
    assert heatmap[4, 5].item() == pytest.approx(math.exp(-1.44))
    assert heatmap[3, 6].item() == pytest.approx(math.exp(-2.88))
    assert heatmap[5, 6].item() == pytest.approx(math.exp(-5.76))  # the patch corner
    assert heatmap[3, 7] == 0 and heatmap[6, 4] == 0  # outside the 5 x 5 patch
    assert (heatmap > 0).sum() == 25


def test_draw_gaussian_keeps_the_elementwise_maximum_and_clips_at_borders():
    heatmap = torch.zeros(4, 5)
    heatmap[0, 1] = 0.9
    draw_gaussian(heatmap, (0, 0), 2)
    assert heatmap[0, 0] == 1.0
    assert heatmap[0, 1] == pytest.approx(0.9)  # larger than exp(-0.72) = 0.487: kept
    assert heatmap[0, 2].item() == pytest.approx(math.exp(-2.88))
    assert heatmap[2, 2].item() == pytest.approx(math.exp(-5.76))
    assert heatmap[3, 0] == 0 and heatmap[0, 3] == 0
    draw_gaussian(heatmap, (4, 3), 1)  # the far corner
    assert heatmap[3, 4] == 1.0 and heatmap[2, 3] > 0
    with pytest.raises(ValueError, match="must lie on"):
        draw_gaussian(heatmap, (5, 0), 1)


def test_regression_targets_of_a_hand_placed_car():
    # x 1.25 -> (1.25 + 4) / 0.5 = 10.5 cells: ix 10, offset 0.5; y -0.75 -> 6.5: iy 6, offset 0.5.
    box = _box(1.25, -0.75, z=0.4, dx=2.0, dy=1.0, dz=1.5, yaw=0.5, vx=1.0, vy=-2.0)
    targets = _targets([box], [CAR])
    car = targets[0]
    assert car.heatmap.shape == (1, 1, 16, 16) and car.inds.shape == (1, 500) and car.boxes.shape == (1, 500, BOX_CODE_SIZE)
    assert car.inds.dtype == torch.int64 and car.mask.dtype == torch.bool
    assert car.heatmap[0, 0, 6, 10] == 1.0 and car.heatmap.max() == 1.0
    assert car.inds[0, 0] == 6 * 16 + 10 and car.mask[0].tolist() == [True] + [False] * 499
    expected = torch.tensor([0.5, 0.5, 0.4, math.log(2.0), 0.0, math.log(1.5), math.cos(0.5), math.sin(0.5), 1.0, -2.0])
    torch.testing.assert_close(car.boxes[0, 0], expected)
    assert (car.boxes[0, 1:] == 0).all()
    # dx, dy = 4 x 2 cells: radius int(1.2) = 1, raised to min_radius 2.
    assert car.heatmap[0, 0, 6, 12].item() == pytest.approx(math.exp(-2.88))
    assert car.heatmap[0, 0, 6, 13] == 0
    # With min_radius 0 the radius stays 1 (sigma 0.5: exp(-2 d^2)); two cells away is 0.
    small = _targets([box], [CAR], min_radius=0)[0]
    assert small.heatmap[0, 0, 6, 11].item() == pytest.approx(math.exp(-2.0)) and small.heatmap[0, 0, 6, 12] == 0
    # Every other head is empty.
    for head in targets[1:]:
        assert head.heatmap.sum() == 0 and not head.mask.any()


def test_task_groups_route_classes_to_heads_and_channels():
    boxes = [_box(-2.0, -2.0), _box(0.0, 0.0), _box(2.0, 2.0)]
    targets = _targets(boxes, [TRUCK, CONSTRUCTION, PEDESTRIAN])
    truck_head, ped_head = targets[1], targets[5]
    assert truck_head.heatmap.shape == (1, 2, 16, 16)
    assert truck_head.heatmap[0, 0, 4, 4] == 1.0 and truck_head.heatmap[0, 0, 8, 8] == 0  # truck: channel 0
    assert truck_head.heatmap[0, 1, 8, 8] == 1.0 and truck_head.heatmap[0, 1, 4, 4] == 0  # construction: channel 1
    assert truck_head.mask[0, :2].all() and truck_head.inds[0, :2].tolist() == [4 * 16 + 4, 8 * 16 + 8]
    assert ped_head.heatmap[0, 0, 12, 12] == 1.0 and ped_head.heatmap[0, 1].sum() == 0  # pedestrian: channel 0
    assert ped_head.inds[0, 0] == 12 * 16 + 12
    for t in (0, 2, 3, 4):
        assert targets[t].heatmap.sum() == 0 and not targets[t].mask.any()


def test_nan_velocity_becomes_zero():
    targets = _targets([_box(0.0, 0.0, vx=float("nan"), vy=float("nan"))], [CAR])
    assert targets[0].boxes[0, 0, 8:].tolist() == [0.0, 0.0]
    assert not targets[0].boxes.isnan().any()


def test_only_the_first_max_objs_per_head_are_assigned():
    xs = [-3.0, -1.0, 1.0, 3.0]
    boxes = [_box(x, 0.0) for x in xs] + [_box(0.0, 3.0)]
    labels = [CAR, PEDESTRIAN, CAR, CAR, CAR]  # cars at -3, 1, 3 and (0, 3); the pedestrian in another head
    car = _targets(boxes, labels, max_objs=2)[0]
    assert car.mask.shape == (1, 2) and car.mask.all()
    assert car.inds[0].tolist() == [8 * 16 + 2, 8 * 16 + 10]
    assert car.heatmap[0, 0, 8, 14] == 0 and car.heatmap[0, 0, 14, 8] == 0  # later cars are not drawn


def test_boxes_without_bev_extent_are_skipped_in_their_slot():
    boxes = [_box(-2.0, 0.0), _box(0.0, 0.0, dx=0.0), _box(2.0, 0.0, dy=-1.0), _box(2.0, 2.0)]
    car = _targets(boxes, [CAR] * 4)[0]
    assert car.mask[0, :4].tolist() == [True, False, False, True]
    assert car.inds[0, 1] == 0 and (car.boxes[0, 1:3] == 0).all()
    assert car.heatmap[0, 0, 8, 8] == 0 and car.heatmap[0, 0, 8, 12] == 0


def test_centres_off_the_map_are_clamped_onto_its_border_cells():
    # x 10 -> 28 cells, clamped to 15.5; y -5 -> -2, clamped to 0; y 4 -> 16 -> 15.5.
    cells, codes = box_codes(torch.tensor([_box(10.0, -5.0), _box(-4.0, 4.0)]), GRID)
    assert cells.tolist() == [[15, 0], [0, 15]]
    torch.testing.assert_close(codes[:, :2], torch.tensor([[0.5, 0.0], [0.0, 0.5]]))
    car = _targets([_box(10.0, -5.0)], [CAR])[0]
    assert car.heatmap[0, 0, 0, 15] == 1.0 and car.inds[0, 0] == 15


def test_batches_stack_per_sample_targets():
    boxes = [torch.tensor([_box(0.0, 0.0)]), torch.zeros(0, 9), torch.tensor([_box(-2.0, 2.0), _box(2.0, 2.0)])]
    labels = [torch.tensor([CAR]), torch.zeros(0, dtype=torch.int64), torch.tensor([CAR, CAR])]
    car = center_targets(boxes, labels, GRID, HEADS)[0]
    assert car.heatmap.shape == (3, 1, 16, 16)
    assert car.mask.sum(1).tolist() == [1, 0, 2]
    assert car.heatmap[1].sum() == 0 and car.heatmap[2, 0, 12, 4] == 1.0 and car.heatmap[2, 0, 12, 12] == 1.0


def test_malformed_inputs_are_refused():
    with pytest.raises(ValueError, match=r"float \[M, 9\]"):
        center_targets([torch.zeros(1, 7)], [torch.zeros(1, dtype=torch.int64)], GRID, HEADS)
    with pytest.raises(ValueError, match="int64"):
        center_targets([torch.zeros(1, 9)], [torch.zeros(1, dtype=torch.int32)], GRID, HEADS)
    with pytest.raises(ValueError, match="same B"):
        center_targets([torch.zeros(1, 9)], [], GRID, HEADS)
