"""Rotated BEV IoU and NMS: native op vs torch reference vs an independent integral."""

import math

import numpy as np
import pytest
import torch
from torch.library import opcheck

from sparse3d import HAS_NATIVE
from sparse3d.core.bev_nms import (
    bev_iou,
    bev_iou_ref,
    circle_nms,
    rotated_nms,
    rotated_nms_ref,
)

needs_native = pytest.mark.skipif(not HAS_NATIVE, reason="sparse3d._C is not built")
IOUS = {"op": bev_iou, "ref": bev_iou_ref}


def box(x, y, dx, dy, yaw=0.0, z=0.0, dz=1.0):
    return [x, y, z, dx, dy, dz, yaw]


def boxes(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def random_boxes(seed: int, n: int, extent: float = 10.0, offset: float = 0.0, columns: int = 7) -> torch.Tensor:
    """float32 [n, columns] boxes: centres in [offset, offset + extent)^2, sizes 0.05-4 m, any yaw."""
    g = torch.Generator().manual_seed(seed)
    b = torch.rand(n, columns, generator=g)
    b[:, :2] = b[:, :2] * extent + offset
    b[:, 3:6] = b[:, 3:6] * 4 + 0.05
    b[:, 6] = (b[:, 6] - 0.5) * 4 * math.pi
    return b


def brute_force_iou(a, b, columns: int = 400_000) -> float:
    """IoU by integrating the intersection's vertical chord over x (midpoint rule).

    Each box is four half-planes n . p <= c; at a fixed x each half-plane bounds y from
    above or below, and the chord of the intersection is [max lower, min upper]. The chord
    length is piecewise linear in x except for jumps at vertical edges, so the error is at
    most about (extent / columns) * height per jump: below 1e-4 in IoU here.
    """
    planes = []
    for x, y, _, dx, dy, _, yaw in (a, b):
        u = np.array([math.cos(yaw), math.sin(yaw)])
        v = np.array([-u[1], u[0]])
        centre = np.array([x, y])
        for normal, half in ((u, dx / 2), (-u, dx / 2), (v, dy / 2), (-v, dy / 2)):
            planes.append((normal, half + normal @ centre))
    radius = max(math.hypot(a[3], a[4]), math.hypot(b[3], b[4])) / 2
    lo, hi = min(a[0], b[0]) - radius, max(a[0], b[0]) + radius
    h = (hi - lo) / columns
    xs = lo + h * (np.arange(columns) + 0.5)
    upper, lower = np.full(columns, np.inf), np.full(columns, -np.inf)
    for (nx, ny), c in planes:
        if ny > 0:
            upper = np.minimum(upper, (c - nx * xs) / ny)
        elif ny < 0:
            lower = np.maximum(lower, (c - nx * xs) / ny)
        else:
            upper = np.where(nx * xs <= c, upper, -np.inf)
    inter = np.clip(upper - lower, 0, None).sum() * h
    union = a[3] * a[4] + b[3] * b[4] - inter
    return inter / max(union, 1e-8)


SQRT2 = math.sqrt(2.0)
HAND_CASES = {
    "identical": (box(1, 2, 4, 2, 0.3), box(1, 2, 4, 2, 0.3), 1.0),
    "disjoint": (box(0, 0, 2, 2), box(5, 0, 2, 2, 0.7), 0.0),
    "touching edges": (box(0, 0, 2, 2), box(2, 0, 2, 2), 0.0),
    "touching rotated": (box(0, 0, 2, 1, 0.5), box(2 * math.cos(0.5), 2 * math.sin(0.5), 2, 1, 0.5), 0.0),
    "touching corners": (box(0, 0, 2, 2), box(2, 2, 2, 2), 0.0),
    "nested": (box(0, 0, 4, 4, 0.2), box(0.3, -0.2, 1, 2, 1.1), 2.0 / 16.0),
    # a 4 x 2 box and itself turned 90 degrees: a 2 x 2 square in common, 4 / (8 + 8 - 4)
    "rotated 90": (box(0, 0, 4, 2), box(0, 0, 4, 2, math.pi / 2), 1.0 / 3.0),
    # a 2 x 2 square and itself turned 45 degrees: the regular octagon 8 (sqrt 2 - 1),
    # IoU 8 (sqrt 2 - 1) / (16 - 8 sqrt 2) = 1 / sqrt 2
    "square 45": (box(0, 0, 2, 2), box(0, 0, 2, 2, math.pi / 4), 1.0 / SQRT2),
    # two 3 x 1 boxes 1 m apart along x: 2 / (3 + 3 - 2)
    "half": (box(0, 0, 3, 1), box(1, 0, 3, 1), 0.5),
    "heading pi": (box(0.5, 0.5, 3, 1, 0.0), box(0.5, 0.5, 3, 1, math.pi), 1.0),
    "zero width": (box(0, 0, 0, 2), box(0, 0, 2, 2), 0.0),
    "both zero": (box(0, 0, 0, 0), box(0, 0, 0, 0), 0.0),
}


@pytest.mark.parametrize("impl", ["op", "ref"])
@pytest.mark.parametrize("name", list(HAND_CASES))
def test_iou_hand_cases(impl, name):
    a, b, want = HAND_CASES[name]
    got = IOUS[impl](boxes(a), boxes(b))
    swapped = IOUS[impl](boxes(b), boxes(a))
    assert got.shape == (1, 1) and got.dtype == torch.float32
    assert not got.isnan().any()
    # float32 output: hand values are exact to rounding; touching pairs leave at most
    # rounding of the frame change (~1e-16 of the box size) as overlap.
    assert got.item() == pytest.approx(want, abs=1e-6) and swapped.item() == pytest.approx(want, abs=1e-6)
    if a[3] * a[4] > 0 and b[3] * b[4] > 0:
        assert brute_force_iou(a, b) == pytest.approx(want, abs=2e-4)


@needs_native
def test_iou_exact_values():
    """Axis-aligned cases with exactly representable answers come out exactly."""
    a = boxes(box(0, 0, 2, 2), box(0, 0, 3, 1), box(0, 0, 2, 2))
    b = boxes(box(0, 0, 2, 2), box(1, 0, 3, 1), box(2, 0, 2, 2))
    assert bev_iou(a, b).diagonal().tolist() == [1.0, 0.5, 0.0]


@pytest.mark.parametrize("seed", range(12))
def test_iou_matches_brute_force_random(seed):
    g = torch.Generator().manual_seed(100 + seed)
    a = random_boxes(seed, 1)[0]
    # b near a so that they overlap in most cases, at a random size and heading
    b = random_boxes(seed + 1000, 1)[0]
    b[:2] = a[:2] + (torch.rand(2, generator=g) - 0.5) * 3
    want = brute_force_iou(a.double().tolist(), b.double().tolist())
    for impl in ("op", "ref"):
        assert IOUS[impl](a[None], b[None]).item() == pytest.approx(want, abs=2e-4), impl


@needs_native
@pytest.mark.parametrize("seed", range(10))
def test_iou_native_matches_ref(seed):
    # scattered and crowded scenes, far from the origin (as nuScenes ego frames are not)
    # and with extra columns (velocities)
    extent, offset, columns = [(10.0, 0.0, 7), (4.0, -60.0, 9), (30.0, 200.0, 7)][seed % 3]
    a = random_boxes(seed, 150, extent, offset, columns)
    b = random_boxes(seed + 50, 120, extent, offset, columns)
    b[:10] = a[:10]  # identical pairs
    b[10:20, 6] = a[10:20, 6] + math.pi / 2  # quarter turns
    out, ref = bev_iou(a, b), bev_iou_ref(a, b)
    assert out.shape == (150, 120) and out.dtype == torch.float32
    # both are exact in double; float32 rounding of the result is all that differs
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    assert bool(((out >= 0) & (out <= 1)).all())
    torch.testing.assert_close(out, bev_iou(b, a).T, rtol=0, atol=1e-6)
    torch.testing.assert_close(bev_iou(a.double(), b.double()), out, rtol=0, atol=1e-6)


def test_iou_dtypes():
    a, b = random_boxes(0, 20), random_boxes(1, 30)
    want = bev_iou(a.double(), b.double())
    torch.testing.assert_close(bev_iou(a, b.double()), want, rtol=0, atol=1e-6)
    half = bev_iou(a.half(), b.half())
    assert half.dtype == torch.float32 and half.shape == (20, 30)


# --- NMS

# Four 3 x 1 boxes: IoU(0, 1) = 0.5 exactly, IoU(0, 2) = IoU(1, 2) = 2.5 / 3.5; box 3 is alone.
NMS_BOXES = boxes(box(0, 0, 3, 1), box(1, 0, 3, 1), box(0.5, 0, 3, 1), box(10, 10, 3, 1))
NMS_SCORES = torch.tensor([0.9, 0.8, 0.7, 0.95])
NMS = {"op": rotated_nms, "ref": rotated_nms_ref}


@pytest.mark.parametrize("impl", ["op", "ref"])
def test_nms_hand_example(impl):
    nms = NMS[impl]
    # order 3, 0, 1, 2: 3 and 0 kept; IoU(0, 1) == 0.5 is not > 0.5, so 1 stays; 2 goes
    assert nms(NMS_BOXES, NMS_SCORES, 0.5).tolist() == [3, 0, 1]
    assert nms(NMS_BOXES, NMS_SCORES, 0.49).tolist() == [3, 0]
    assert nms(NMS_BOXES, NMS_SCORES, 0.72).tolist() == [3, 0, 1, 2]
    assert nms(NMS_BOXES, NMS_SCORES, 1.0).tolist() == [3, 0, 1, 2]


@pytest.mark.parametrize("impl", ["op", "ref"])
def test_nms_only_kept_boxes_suppress(impl):
    # IoU(0, 1) = IoU(1, 2) = 1 / 5, IoU(0, 2) = 0: 1 is suppressed by 0, so 2 survives
    chain = boxes(box(0, 0, 3, 1), box(2, 0, 3, 1), box(4, 0, 3, 1))
    assert NMS[impl](chain, torch.tensor([0.9, 0.8, 0.7]), 0.1).tolist() == [0, 2]


@pytest.mark.parametrize("impl", ["op", "ref"])
def test_nms_ties_keep_the_lower_index_first(impl):
    nms = NMS[impl]
    far = boxes(*[box(5.0 * k, 0, 1, 1) for k in range(5)])
    assert nms(far, torch.tensor([0.5, 0.7, 0.5, 0.7, 0.5]), 0.1).tolist() == [1, 3, 0, 2, 4]
    same = boxes(box(0, 0, 2, 1), box(0, 0, 2, 1), box(0, 0, 2, 1))
    assert nms(same, torch.tensor([0.3, 0.6, 0.6]), 0.5).tolist() == [1]


def test_nms_pre_and_post_max_size():
    # scores 0.95 (3), 0.9 (0), 0.8 (1), 0.7 (2)
    assert rotated_nms(NMS_BOXES, NMS_SCORES, 0.5, pre_max_size=2).tolist() == [3, 0]
    assert rotated_nms(NMS_BOXES, NMS_SCORES, 0.72, pre_max_size=3).tolist() == [3, 0, 1]
    assert rotated_nms(NMS_BOXES, NMS_SCORES, 0.72, post_max_size=2).tolist() == [3, 0]
    assert rotated_nms(NMS_BOXES, NMS_SCORES, 0.5, pre_max_size=10, post_max_size=10).tolist() == [3, 0, 1]
    assert rotated_nms(NMS_BOXES, NMS_SCORES, 0.5, pre_max_size=0).tolist() == []
    # pre_max_size keeps the tie order too: of four equal scores the first three take part
    far = boxes(*[box(5.0 * k, 0, 1, 1) for k in range(4)])
    assert rotated_nms(far, torch.ones(4), 0.1, pre_max_size=3).tolist() == [0, 1, 2]


def clustered_boxes(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Detections as a head emits them: jittered copies around a few objects, random scores."""
    g = torch.Generator().manual_seed(seed)
    objects = random_boxes(seed, max(1, n // 8), extent=40.0)
    b = objects[torch.randint(0, objects.shape[0], (n,), generator=g)].clone()
    b[:, :2] += torch.randn(n, 2, generator=g) * 0.4
    b[:, 3:5] *= 1 + torch.randn(n, 2, generator=g) * 0.1
    b[:, 6] += torch.randn(n, generator=g) * 0.2
    return b, torch.rand(n, generator=g)


@needs_native
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("threshold", [0.1, 0.2, 0.5, 0.8])
def test_nms_native_matches_ref(seed, threshold):
    b, s = clustered_boxes(seed, 300)
    keep = rotated_nms(b, s, threshold)
    assert keep.dtype == torch.int64
    assert torch.equal(keep, rotated_nms_ref(b, s, threshold))
    # the definition: kept boxes pairwise at IoU <= threshold, in descending score order, and
    # every dropped box over the threshold with a kept box of higher rank
    iou = bev_iou_ref(b, b).double()
    assert bool((iou[keep][:, keep].fill_diagonal_(0) <= threshold + 1e-6).all())
    assert bool((s[keep].diff() <= 0).all())
    dropped = torch.ones(b.shape[0], dtype=torch.bool)
    dropped[keep] = False
    assert bool((iou[dropped][:, keep] > threshold - 1e-6).any(1).all())


@needs_native
def test_results_independent_of_thread_count():
    # NMS passes run in parallel from 2 x 2048 candidates on (kNmsGrain in bev_nms.cpp)
    b, s = clustered_boxes(7, 6000)
    other = random_boxes(8, 300, extent=40.0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = bev_iou(b[:1500], other), rotated_nms(b, s, 0.2)
        torch.set_num_threads(2)
        two = bev_iou(b[:1500], other), rotated_nms(b, s, 0.2)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


@needs_native
def test_opcheck():
    b, s = clustered_boxes(3, 40)
    opcheck(torch.ops.sparse3d.bev_iou.default, (b, random_boxes(4, 9)))
    opcheck(torch.ops.sparse3d.bev_iou.default, (b.double()[:5], b.double()[5:]))
    opcheck(torch.ops.sparse3d.rotated_nms.default, (b, s, 0.3))
    opcheck(torch.ops.sparse3d.rotated_nms.default, (b.double(), s, 0.0))


# --- circle NMS


def test_circle_nms_inclusive_threshold_and_order():
    centers = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [1.5, 1.5]])
    scores = torch.tensor([0.9, 0.8, 0.85, 0.7, 0.9])
    # order 0, 4 (tie: lower index first), 2, 1, 3; d^2(0, 4) = 4.5, d^2(0, 1) = 1 <= 1
    assert circle_nms(centers, scores, 1.0).tolist() == [0, 4, 2, 3]
    # d^2(4, 2) = 2.5 and d^2(4, 1) = 2.5: both within 2.5 of the kept 4; then 3 at d^2(4, 3) = 4.5
    assert circle_nms(centers, scores, 2.5).tolist() == [0, 4, 3]
    assert circle_nms(centers, scores, 2.5, post_max_size=2).tolist() == [0, 4]
    assert circle_nms(centers, scores, 0.0).tolist() == [0, 4, 2, 1, 3]
    # boxes work as centres (the first two columns)
    assert circle_nms(NMS_BOXES, NMS_SCORES, 1.0).tolist() == [3, 0]


# --- edges of the input domain


@pytest.mark.parametrize("impl", ["op", "ref"])
def test_empty_inputs(impl):
    empty, some = torch.zeros(0, 7), random_boxes(0, 5)
    assert IOUS[impl](empty, some).shape == (0, 5)
    assert IOUS[impl](some, empty).shape == (5, 0)
    keep = NMS[impl](empty, torch.zeros(0), 0.5)
    assert keep.shape == (0,) and keep.dtype == torch.int64
    if impl == "op":
        assert circle_nms(torch.zeros(0, 2), torch.zeros(0), 1.0).shape == (0,)
        assert rotated_nms(empty, torch.zeros(0), 0.5, pre_max_size=3, post_max_size=2).shape == (0,)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: bev_iou(torch.zeros(5, 6), torch.zeros(2, 7)), ValueError, r"boxes_a must be \[N, 7\].*got \[5, 6\]"),
        (lambda: bev_iou(torch.zeros(2, 7), torch.zeros(3)), ValueError, r"boxes_b.*got \[3\]"),
        (lambda: bev_iou(torch.zeros(2, 7, dtype=torch.int32), torch.zeros(2, 7)), TypeError, "float tensor"),
        (lambda: bev_iou([[0.0] * 7], torch.zeros(2, 7)), TypeError, "must be a Tensor, got list"),
        (
            lambda: bev_iou(boxes(box(0, 0, 1, 1), box(0, float("nan"), 1, 1)), torch.zeros(1, 7)),
            ValueError,
            r"finite.*row 1 of \[2, 7\]",
        ),
        (lambda: bev_iou(boxes(box(0, 0, 1, -2)), torch.zeros(1, 7)), ValueError, r"dx, dy >= 0.*\[1.0, -2.0\]"),
        (lambda: rotated_nms(torch.zeros(4, 7), torch.zeros(3), 0.5), ValueError, r"N = 4.*got \[3\]"),
        (lambda: rotated_nms(torch.zeros(4, 7), torch.zeros(4, 1), 0.5), ValueError, r"\[N\].*got \[4, 1\]"),
        (lambda: rotated_nms(boxes(box(0, 0, 1, 1, float("inf"))), torch.zeros(1), 0.5), ValueError, "finite"),
        (lambda: rotated_nms(torch.zeros(1, 7), torch.tensor([float("nan")]), 0.5), ValueError, "NaN"),
        (lambda: rotated_nms(torch.zeros(1, 7), torch.zeros(1), "0.5"), TypeError, "real number"),
        (lambda: rotated_nms(torch.zeros(1, 7), torch.zeros(1), 0.5, pre_max_size=-1), ValueError, "pre_max_size"),
        (lambda: rotated_nms(torch.zeros(1, 7), torch.zeros(1), 0.5, post_max_size=2.0), ValueError, "post_max_size"),
        (lambda: circle_nms(torch.zeros(3, 1), torch.zeros(3), 1.0), ValueError, r"\[N, 2\].*got \[3, 1\]"),
        (lambda: circle_nms(torch.zeros(3, 2), torch.zeros(2), 1.0), ValueError, r"N = 3.*got \[2\]"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


@needs_native
def test_raw_op_checks():
    with pytest.raises(RuntimeError, match=r"scores must be \[N\] with N = 3"):
        torch.ops.sparse3d.rotated_nms(torch.zeros(3, 7), torch.zeros(2), 0.5)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        torch.ops.sparse3d.bev_iou(torch.zeros(3, 7, dtype=torch.half), torch.zeros(2, 7, dtype=torch.half))


# --- CUDA


@pytest.mark.cuda
def test_cuda_matches_cpu():
    for seed in range(4):
        b, s = clustered_boxes(seed, 700)
        other = random_boxes(seed, 90, extent=40.0)
        for dtype in (torch.float32, torch.float64):
            cpu = bev_iou(b.to(dtype), other.to(dtype))
            gpu = bev_iou(b.to(dtype).cuda(), other.to(dtype).cuda())
            # both run box_overlap.h in double; CUDA's sin / cos may differ in the last bit
            torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-6)
            for threshold in (0.1, 0.5):
                keep = rotated_nms(b.to(dtype).cuda(), s.cuda(), threshold, post_max_size=83)
                assert keep.is_cuda
                assert torch.equal(keep.cpu(), rotated_nms(b.to(dtype), s, threshold, post_max_size=83))
    assert rotated_nms(torch.zeros(0, 7).cuda(), torch.zeros(0).cuda(), 0.5).shape == (0,)
    assert torch.equal(rotated_nms(NMS_BOXES.cuda(), NMS_SCORES.cuda(), 0.5).cpu(), torch.tensor([3, 0, 1]))


@pytest.mark.cuda
def test_cuda_opcheck():
    b, s = clustered_boxes(3, 100)
    opcheck(torch.ops.sparse3d.bev_iou.default, (b.cuda(), b[:30].cuda()))
    opcheck(torch.ops.sparse3d.rotated_nms.default, (b.cuda(), s.cuda(), 0.3))
