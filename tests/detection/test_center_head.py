"""CenterHead: OpenPCDet's state-dict names and shapes, initialisation, the focal and L1
losses on hand-computed cases, a short fit, and thread-count determinism."""

import math

import pytest
import torch
from torch import nn

from sparse3d.data.nuscenes.classes import DETECTION_NAMES
from sparse3d.detection.heads import (
    REGRESSION_HEADS,
    CenterHead,
    CenterHeadConfig,
    box_regression_loss,
    heatmap_focal_loss,
)
from sparse3d.detection.targets import BOX_CODE_SIZE, BevGrid, CenterTargets

GRID = BevGrid((-4.0, -4.0, -5.0, 4.0, 4.0, 3.0), (0.125, 0.125, 0.2), 4)  # 16 x 16 cells of 0.5 m
SMALL = CenterHeadConfig(shared_channels=16)
CAR = DETECTION_NAMES.index("car")
TWO_GROUPS = CenterHeadConfig(class_names_each_head=(("car",), ("truck", "pedestrian")), shared_channels=16)
"""A cheaper head for the training and determinism checks: classes car, truck, pedestrian."""


def _bn(prefix: str, c: int) -> list[tuple[str, tuple[int, ...]]]:
    return [(f"{prefix}.{k}", (c,)) for k in ("weight", "bias", "running_mean", "running_var")] + [
        (f"{prefix}.num_batches_tracked", ())
    ]


def _reference_dense_head_keys() -> list[tuple[str, tuple[int, ...]]]:
    """detectors.md section 2.2, dense_head, written out."""
    keys = [("dense_head.shared_conv.0.weight", (64, 512, 3, 3)), ("dense_head.shared_conv.0.bias", (64,))]
    keys += _bn("dense_head.shared_conv.1", 64)
    for t, n_cls in enumerate([1, 2, 2, 1, 2, 2]):
        for name, out in [("center", 2), ("center_z", 1), ("dim", 3), ("rot", 2), ("vel", 2), ("hm", n_cls)]:
            p = f"dense_head.heads_list.{t}.{name}"
            keys += [(f"{p}.0.0.weight", (64, 64, 3, 3)), (f"{p}.0.0.bias", (64,))]
            keys += _bn(f"{p}.0.1", 64)
            keys += [(f"{p}.1.weight", (out, 64, 3, 3)), (f"{p}.1.bias", (out,))]
    return keys


def test_state_dict_matches_openpcdet_dense_head():
    detector = nn.Module()
    detector.dense_head = CenterHead(CenterHeadConfig(), in_channels=512)
    state = detector.state_dict()
    expected = _reference_dense_head_keys()
    assert len(expected) == 331
    assert [(k, tuple(v.shape)) for k, v in state.items()] == expected
    assert sum(k.endswith("num_batches_tracked") for k in state) == 37
    assert sum(p.numel() for p in detector.parameters()) == 1_669_510  # detectors.md section 2
    # An OpenPCDet-shaped state dict loads strictly.
    torch.manual_seed(0)
    loaded = {k: torch.randn(v.shape) if v.is_floating_point() else v for k, v in state.items()}
    detector.load_state_dict(loaded, strict=True)
    assert torch.equal(detector.dense_head.heads_list[5].hm[1].bias, loaded["dense_head.heads_list.5.hm.1.bias"])


def test_batch_norm_settings_and_initialisation():
    torch.manual_seed(0)
    head = CenterHead(CenterHeadConfig(), in_channels=512)
    norms = [m for m in head.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 37 and all(m.eps == 1e-5 and m.momentum == 0.1 for m in norms)
    custom = CenterHead(CenterHeadConfig(shared_channels=8, bn_eps=1e-3, bn_momentum=0.01), in_channels=4)
    assert all(m.eps == 1e-3 and m.momentum == 0.01 for m in custom.modules() if isinstance(m, nn.BatchNorm2d))
    for group in head.heads_list:
        assert (group.hm[1].bias == -2.19).all()
        for name, _ in REGRESSION_HEADS:
            sub_head = getattr(group, name)
            assert (sub_head[0][0].bias == 0).all() and (sub_head[1].bias == 0).all()
    # Kaiming normal (fan_in, ReLU gain): std sqrt(2 / (64 * 9)) = 0.0589 over 36864 weights.
    weight = head.heads_list[0].center[0][0].weight
    assert weight.std().item() == pytest.approx(math.sqrt(2 / 576), rel=0.03)


def test_forward_returns_every_sub_head_per_group():
    head = CenterHead(SMALL, in_channels=8)
    preds = head(torch.randn(2, 8, 5, 7))
    assert len(preds) == 6
    for pred, n_cls in zip(preds, [1, 2, 2, 1, 2, 2]):
        assert list(pred) == ["center", "center_z", "dim", "rot", "vel", "hm"]
        assert {k: tuple(v.shape) for k, v in pred.items()} == {
            "center": (2, 2, 5, 7), "center_z": (2, 1, 5, 7), "dim": (2, 3, 5, 7),
            "rot": (2, 2, 5, 7), "vel": (2, 2, 5, 7), "hm": (2, n_cls, 5, 7),
        }
    with pytest.raises(ValueError, match=r"\[B, 8, H, W\]"):
        head(torch.randn(2, 4, 5, 7))


def test_config_checks():
    with pytest.raises(ValueError, match="exactly once"):
        CenterHead(CenterHeadConfig(class_names_each_head=(("car",), ("truck",))), in_channels=8)
    with pytest.raises(ValueError, match="two heads"):
        CenterHeadConfig(class_names_each_head=(("car",), ("car", "truck")))
    with pytest.raises(ValueError, match="10 weights"):
        CenterHeadConfig(code_weights=(1.0,) * 8)
    with pytest.raises(ValueError, match="gaussian_overlap"):
        CenterHeadConfig(gaussian_overlap=1.0)
    # Class order of the detector is free; the groups only name the classes.
    head = CenterHead(CenterHeadConfig(class_names_each_head=(("car",), ("pedestrian",))), 8, ["pedestrian", "car"])
    assert head.class_ids_each_head == [[1], [0]]


def _logits(probs):
    p = torch.tensor(probs, dtype=torch.float64)
    return (p / (1 - p)).log().reshape(1, 1, 1, -1)


def test_focal_loss_by_hand():
    gt = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64).reshape(1, 1, 1, 3)
    loss = heatmap_focal_loss(_logits([0.8, 0.5, 0.1]), gt)
    pos = math.log(0.8) * 0.2**2
    neg = math.log(0.5) * 0.5**2 * 0.5**4 + math.log(0.9) * 0.1**2 * 1.0
    assert loss.item() == pytest.approx(-(pos + neg) / 1, rel=1e-9)
    # Two positives: divided by 2. No positive: the negative sum alone (divided by 1).
    gt2 = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64).reshape(1, 1, 1, 3)
    loss2 = heatmap_focal_loss(_logits([0.8, 0.6, 0.1]), gt2)
    assert loss2.item() == pytest.approx(-(pos + math.log(0.6) * 0.4**2 + math.log(0.9) * 0.01) / 2, rel=1e-9)
    gt0 = torch.tensor([0.5, 0.0], dtype=torch.float64).reshape(1, 1, 1, 2)
    assert heatmap_focal_loss(_logits([0.5, 0.1]), gt0).item() == pytest.approx(-neg, rel=1e-9)


def test_focal_loss_clamps_the_probability():
    gt = torch.ones(1, 1, 1, 1)
    at_clamp = -math.log(1e-4) * (1 - 1e-4) ** 2
    for logit in (-20.0, -50.0):
        assert heatmap_focal_loss(torch.full((1, 1, 1, 1), logit), gt).item() == pytest.approx(at_clamp, rel=1e-5)


def test_regression_loss_masks_slots_and_nan_targets():
    box_maps = torch.arange(60, dtype=torch.float64).reshape(1, 10, 2, 3).requires_grad_()  # value 6 c + cell
    boxes = torch.zeros(1, 3, 10, dtype=torch.float64)
    boxes[0, 0, 8] = float("nan")  # object 0: targets 0, channel 8 unknown
    boxes[0, 1] = 1.0  # object 1: targets 1
    boxes[0, 2] = 100.0  # an empty slot: ignored
    target = CenterTargets(torch.zeros(1, 1, 2, 3), torch.tensor([[4, 1, 0]]), torch.tensor([[True, True, False]]), boxes)
    loss = box_regression_loss(box_maps, target)
    # Channel c: |6c + 4 - 0| + |6c + 1 - 1| over 2 objects; channel 8 only object 1: 48 / 2.
    expected = torch.tensor([(12.0 * c + 4) / 2 for c in range(10)], dtype=torch.float64)
    expected[8] = 24.0
    torch.testing.assert_close(loss, expected)
    (grad,) = torch.autograd.grad(loss.sum(), box_maps)
    assert not grad.isnan().any()
    assert grad[0, 8].flatten().tolist() == [0.0, 0.5, 0.0, 0.0, 0.0, 0.0]  # object 0's NaN channel gets none
    assert grad[0, 0].flatten().tolist() == [0.0, 0.0, 0.0, 0.0, 0.5, 0.0]  # pred 1 - target 1 = 0: abs'(0) = 0


def _car_batch(x=0.75, y=-1.25):
    boxes = [torch.tensor([[x, y, 0.5, 2.0, 1.0, 1.5, 0.3, 1.0, -0.5]])]
    return boxes, [torch.tensor([CAR])]


def test_loss_dict_applies_the_weights():
    torch.manual_seed(0)
    config = CenterHeadConfig(shared_channels=16, cls_weight=2.0, loc_weight=0.5)
    head = CenterHead(config, in_channels=8)
    preds = head(torch.randn(1, 8, *GRID.shape))
    targets = head.targets(*_car_batch(), GRID)
    losses = head.loss(preds, targets)
    assert list(losses) == [f"{kind}_loss_head_{t}" for t in range(6) for kind in ("hm", "loc")]
    weights = torch.tensor(config.code_weights)
    box_maps = torch.cat([preds[0][name] for name, _ in REGRESSION_HEADS], dim=1)
    torch.testing.assert_close(losses["loc_loss_head_0"], 0.5 * (box_regression_loss(box_maps, targets[0]) * weights).sum())
    torch.testing.assert_close(losses["hm_loss_head_3"], 2.0 * heatmap_focal_loss(preds[3]["hm"], targets[3].heatmap))
    assert losses["loc_loss_head_1"] == 0  # no truck: every slot is empty
    with pytest.raises(ValueError, match="BevGrid"):
        head.loss(head(torch.randn(1, 8, 8, 8)), targets)


def test_total_loss_falls_when_fitting_one_box():
    torch.manual_seed(0)
    head = CenterHead(TWO_GROUPS, in_channels=8, class_names=["car", "truck", "pedestrian"])
    bev = torch.randn(1, 8, *GRID.shape)
    boxes, _ = _car_batch()
    targets = head.targets(boxes, [torch.tensor([0])], GRID)  # "car" is class 0 of this head
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    totals = []
    for _ in range(30):
        total = sum(head.loss(head(bev), targets).values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert totals[-1] < 0.3 * totals[0], totals  # ~6.1 -> ~0.6


def _loss_and_grads(threads: int) -> list[torch.Tensor]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        head = CenterHead(TWO_GROUPS, in_channels=8, class_names=["car", "truck", "pedestrian"])
        grid = BevGrid((-8.0, -8.0, -5.0, 8.0, 8.0, 3.0), (0.125, 0.125, 0.2), 4)  # 32 x 32
        bev = torch.randn(2, 8, *grid.shape, requires_grad=True)
        boxes = [torch.tensor([[1.0, 2.0, 0.0, 4.0, 2.0, 1.5, 0.1, 0.0, 0.0]]), torch.tensor([[-5.0, 3.0, 0.0, 1.0, 1.0, 1.0, 1.0, 2.0, 0.0]])]
        labels = [torch.tensor([0]), torch.tensor([2])]  # a car, a pedestrian
        losses = head.loss(head(bev), head.targets(boxes, labels, grid))
        total = sum(losses.values())
        grads = torch.autograd.grad(total, [bev, *head.parameters()])
        return [torch.stack(list(losses.values())), *grads]
    finally:
        torch.set_num_threads(previous)


def test_losses_and_gradients_do_not_depend_on_the_thread_count():
    # At this size torch's own BatchNorm2d on the convolutions' channels-last output
    # already differs between 1 and 2 threads.
    one, two = _loss_and_grads(1), _loss_and_grads(2)
    assert all(torch.equal(a, b) for a, b in zip(one, two))


def test_box_code_matches_the_regression_heads():
    assert sum(c for _, c in REGRESSION_HEADS) == BOX_CODE_SIZE == len(CenterHeadConfig().code_weights)


@pytest.mark.parametrize("num_conv", [1, 2])
def test_forward_equals_running_each_sub_head_on_its_own(num_conv):
    torch.manual_seed(0)
    head = CenterHead(CenterHeadConfig(shared_channels=8, num_conv=num_conv, num_hm_conv=num_conv), in_channels=6)
    bev = torch.randn(2, 6, 9, 7)
    fused = head(bev)
    shared = head.shared_conv(bev)
    one_by_one = [sub(shared) for sub in head.heads_list]
    for a, b in zip(fused, one_by_one, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
