"""trivector_features: native kernels vs torch reference (forward and the vectors'
gradient, on each device), gradcheck, determinism across thread counts, the CUDA kernels
against the CPU ones, the dense trilinear equivalence, bad input."""

import pytest
import torch
import torch.nn.functional as F
from devices import DEVICES
from torch.library import opcheck

import sparse3d
from sparse3d.fields.trivector import trivector_features, trivector_features_ref

native = pytest.mark.skipif(not sparse3d.HAS_NATIVE, reason="native extension not built")
HALF = 0.3


def random_case(seed: int, S: int, K: int, N: int, R: int, D: int, dtype=torch.float32):
    """Points spread up to 1.4 half-sizes around their tensors' centres (some outside their
    cubes, which clamps), about a quarter of the slots empty (-1), one tensor unused."""
    g = torch.Generator().manual_seed(seed)
    centers = (torch.rand(N, 3, generator=g, dtype=torch.float64) * 4).to(dtype)
    index = torch.randint(0, N - 1, (S, K), generator=g)  # tensor N - 1 gets no sample
    index[torch.rand(S, K, generator=g) < 0.25] = -1
    owner = index.clamp(min=0)[:, 0]
    points = centers[owner] + ((torch.rand(S, 3, generator=g, dtype=torch.float64) * 2 - 1) * 1.4 * HALF).to(dtype)
    weights = torch.rand(S, K, generator=g, dtype=torch.float64).to(dtype)
    vectors = torch.randn(N, 3, R, D, generator=g, dtype=torch.float64).to(dtype)
    return points, index, weights, vectors, centers


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed, S, K, N, R, D", [(0, 500, 4, 30, 16, 7), (1, 300, 3, 12, 5, 2), (2, 400, 1, 50, 33, 29)])
def test_matches_reference_forward_and_backward(seed, S, K, N, R, D, dtype, device):
    points, index, weights, vectors, centers = (t.to(device) for t in random_case(seed, S, K, N, R, D, dtype))
    vectors.requires_grad_(True)
    out = trivector_features(points, index, weights, vectors, centers, HALF)
    ref = trivector_features_ref(points, index, weights, vectors, centers, HALF)
    assert out.shape == (S, R) and out.dtype == dtype
    torch.testing.assert_close(out, ref)
    cotangent = torch.randn_like(ref)
    (g_out,) = torch.autograd.grad(out, vectors, cotangent)
    (g_ref,) = torch.autograd.grad(ref, vectors, cotangent)
    torch.testing.assert_close(g_out, g_ref)
    assert torch.equal(g_out[-1], torch.zeros_like(g_out[-1]))  # the unused tensor


def test_empty_slots_give_zero():
    points, index, weights, vectors, centers = random_case(3, 20, 2, 4, 3, 5)
    vectors.requires_grad_(True)
    out = trivector_features(points, torch.full_like(index, -1), weights, vectors, centers, HALF)
    (grad,) = torch.autograd.grad(out, vectors, torch.ones_like(out))
    assert torch.equal(out, torch.zeros(20, 3)) and torch.equal(grad, torch.zeros_like(vectors))


def test_float64_gradcheck():
    points, index, weights, vectors, centers = random_case(4, 12, 3, 5, 2, 4, torch.float64)
    vectors.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: trivector_features(points, index, weights, v, centers, HALF), (vectors,))


@native
def test_bitwise_equal_across_thread_counts():
    points, index, weights, vectors, centers = random_case(5, 20000, 4, 300, 24, 9)
    vectors.requires_grad_(True)
    cotangent = torch.randn(20000, 24, generator=torch.Generator().manual_seed(0))
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            out = trivector_features(points, index, weights, vectors, centers, HALF)
            results.append((out, torch.autograd.grad(out, vectors, cotangent)[0]))
    finally:
        torch.set_num_threads(previous)
    for out, grad in results[1:]:
        assert torch.equal(out, results[0][0]) and torch.equal(grad, results[0][1])


@native
def test_opcheck():
    points, index, weights, vectors, centers = random_case(6, 30, 2, 5, 3, 4)
    opcheck(torch.ops.sparse3d.trivector_features.default, (points, index, weights, vectors.requires_grad_(True), centers, HALF))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu_and_repeats_bitwise(dtype):
    # The CUDA kernels evaluate trivector.h's cell and lerp like the CPU ones and sum each
    # sample's slots, and each tensor's samples (sorted by a stable sort), in the CPU's
    # order; nvcc may fuse a multiply-add the CPU rounds twice, so values agree to rounding
    # and two CUDA runs bit for bit (the .cu promise: one writer per output, no atomics).
    points, index, weights, vectors, centers = random_case(5, 20000, 4, 300, 24, 9, dtype)
    cotangent = torch.randn(20000, 24, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dtype)

    def run(device):
        v = vectors.to(device).requires_grad_(True)
        out = trivector_features(points.to(device), index.to(device), weights.to(device), v, centers.to(device), HALF)
        (grad,) = torch.autograd.grad(out, v, cotangent.to(device))
        assert out.device.type == grad.device.type == device
        return out.cpu(), grad.cpu()

    cpu, cuda, again = run("cpu"), run("cuda"), run("cuda")
    tol = {} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    for a, b, c in zip(cpu, cuda, again):
        torch.testing.assert_close(b, a, **tol)
        assert torch.equal(b, c)


@pytest.mark.cuda
def test_cuda_skips_out_of_range_slots_and_opcheck():
    # The CPU kernel rejects an index >= N; the CUDA one cannot check without waiting for
    # the device, so it skips the slot, as it skips -1 (trivector_args.h).
    points, index, weights, vectors, centers = (t.cuda() for t in random_case(6, 30, 2, 5, 3, 4))
    beyond = torch.where(index < 0, vectors.shape[0] + 7, index)
    vectors.requires_grad_(True)
    v_out = torch.randn(30, 3, device="cuda")
    out = trivector_features(points, index, weights, vectors, centers, HALF)
    out_beyond = trivector_features(points, beyond, weights, vectors, centers, HALF)
    assert torch.equal(out_beyond, out)
    assert torch.equal(torch.autograd.grad(out_beyond, vectors, v_out)[0], torch.autograd.grad(out, vectors, v_out)[0])
    opcheck(torch.ops.sparse3d.trivector_features.default, (points, index, weights, vectors, centers, HALF))


def test_equals_dense_trilinear_evaluation():
    # One tensor per sample with weight 1: the CP tensor sum_r vx_r (x) vy_r (x) vz_r,
    # made dense ([R, D, D, D], one channel per component) and sampled trilinearly, with
    # the cube's faces at the grid's corner values (align_corners) and clamping outside.
    points, _, _, vectors, centers = random_case(7, 200, 1, 6, 4, 5, torch.float64)
    index = torch.arange(200)[:, None] % 6
    out = trivector_features(points, index, torch.ones(200, 1, dtype=torch.float64), vectors, centers, HALF)
    local = (points - centers[index[:, 0]]) / HALF  # in [-1, 1] inside the cube
    for n in range(6):
        vx, vy, vz = vectors[n]
        dense = torch.einsum("ri,rj,rk->rijk", vx, vy, vz)  # [R, x, y, z]
        mine = index[:, 0] == n
        grid = local[mine].flip(-1)[None, :, None, None, :]  # grid_sample wants (z, y, x) = (W, H, D)
        sampled = F.grid_sample(dense[None], grid, mode="bilinear", padding_mode="border", align_corners=True)
        torch.testing.assert_close(out[mine], sampled[0, :, :, 0, 0].T)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"vectors": torch.zeros(5, 3, 4, 1)}, "vectors must be \\[N, 3, R, D >= 2\\]"),
        ({"points": torch.zeros(10, 2)}, "points must be \\[10, 3\\]"),
        ({"weights": torch.zeros(10, 3)}, "weights must be \\[10, 2\\]"),
        ({"centers": torch.zeros(4, 3)}, "centers must be \\[5, 3\\]"),
        ({"index": torch.zeros(10, 2, dtype=torch.int32)}, "index must be int64"),
        ({"weights": torch.zeros(10, 2, dtype=torch.float64)}, "must share one float dtype"),
        ({"half_size": 0.0}, "half_size must be > 0"),
    ],
)
def test_bad_arguments(change, message):
    args = {"points": torch.zeros(10, 3), "index": torch.zeros(10, 2, dtype=torch.long), "weights": torch.zeros(10, 2),
            "vectors": torch.zeros(5, 3, 4, 3), "centers": torch.zeros(5, 3), "half_size": 0.5} | change
    with pytest.raises(ValueError, match=message):
        trivector_features(**args)
