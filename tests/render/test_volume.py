"""volume_weights and composite: native kernel vs torch reference, hand-worked rays,
gradients, determinism, bad input."""

import math
import os
import subprocess
import sys

import pytest
import torch
from devices import DEVICES
from torch.library import opcheck

import sparse3d
from sparse3d.render.volume import composite, volume_weights, volume_weights_ref

native = pytest.mark.skipif(not sparse3d.HAS_NATIVE, reason="native extension not built")
TOLERANCES = {torch.float32: {"rtol": 1e-5, "atol": 1e-6}, torch.float64: {"rtol": 1e-12, "atol": 1e-14}}


def random_rays(n_rays: int, seed: int, dtype=torch.float64, max_samples: int = 40, device="cpu"):
    """Rays of 0..max_samples samples, including an empty ray, a one-sample ray and a long
    one; densities mix zeros, ordinary values and huge (saturating) ones."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, max_samples + 1, (n_rays,), generator=g)
    counts[:3] = torch.tensor([0, 1, 5 * max_samples])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    S = int(offsets[-1])
    kind = torch.randint(0, 10, (S,), generator=g)
    sigmas = torch.rand(S, generator=g, dtype=dtype) * 20
    sigmas = torch.where(kind == 0, 0.0, sigmas)
    sigmas = torch.where(kind == 1, 10 ** (4 + 3 * torch.rand(S, generator=g, dtype=dtype)), sigmas)
    deltas = 0.01 + 0.05 * torch.rand(S, generator=g, dtype=dtype)
    return sigmas.to(device), deltas.to(device), offsets.to(device)


def weights_and_grad(fn, sigmas, deltas, offsets, min_transmittance, v_weights, v_transmittance):
    sigmas = sigmas.detach().requires_grad_(True)
    weights, transmittance = fn(sigmas, deltas, offsets, min_transmittance)
    (v_sigmas,) = torch.autograd.grad((weights, transmittance), sigmas, (v_weights, v_transmittance))
    return weights, transmittance, v_sigmas


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("min_transmittance", [0.0, 1e-4, 0.3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_forward_and_backward(device, dtype, min_transmittance, seed):
    sigmas, deltas, offsets = random_rays(300, seed, dtype, device=device)
    g = torch.Generator().manual_seed(100 + seed)
    v_weights = torch.randn(sigmas.shape, generator=g, dtype=dtype).to(device)
    v_transmittance = torch.randn(len(offsets) - 1, generator=g, dtype=dtype).to(device)
    args = (sigmas, deltas, offsets, min_transmittance, v_weights, v_transmittance)
    out = weights_and_grad(volume_weights, *args)
    ref = weights_and_grad(volume_weights_ref, *args)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, **TOLERANCES[dtype])
    if min_transmittance == 0.3:  # the case exercises early termination mid-ray
        assert (out[1] < min_transmittance).any() and ((out[0] == 0) & (sigmas > 0)).any()


def test_hand_worked_two_samples():
    # tau = ln 2, then ln 4: T = 1, 1/2, 1/8 and the weights are 1/2 and 1/2 * 3/4.
    sigmas = torch.tensor([2.0, 4.0], dtype=torch.float64)
    deltas = torch.full((2,), math.log(2) / 2, dtype=torch.float64)
    offsets = torch.tensor([0, 2])

    def check(min_transmittance, weights, transmittance):
        out = volume_weights(sigmas, deltas, offsets, min_transmittance)
        for a, b in zip(out, (weights, transmittance)):
            torch.testing.assert_close(a, torch.tensor(b, dtype=torch.float64), rtol=1e-15, atol=0)

    check(0.0, [0.5, 0.375], [0.125])
    # The second sample sees T = 1/2 < 0.6: it weighs 0, and the ray keeps T = 1/2.
    check(0.6, [0.5, 0.0], [0.5])
    # A threshold above 1 stops every ray before its first sample; an empty ray keeps T = 1.
    weights, transmittance = volume_weights(sigmas, deltas, torch.tensor([0, 2, 2]), min_transmittance=1.5)
    assert weights.tolist() == [0.0, 0.0] and transmittance.tolist() == [1.0, 1.0]


def test_weights_and_background_share_all_light():
    sigmas, deltas, offsets = random_rays(200, seed=7)
    weights, transmittance = volume_weights(sigmas, deltas, offsets)
    total = torch.zeros_like(transmittance).index_add(0, torch.repeat_interleave(offsets.diff()), weights)
    torch.testing.assert_close(total + transmittance, torch.ones_like(transmittance), rtol=0, atol=1e-12)


@pytest.mark.parametrize("min_transmittance", [0.0, 0.2])
def test_float64_gradcheck(min_transmittance):
    sigmas, deltas, offsets = random_rays(8, seed=3, max_samples=6)
    sigmas = sigmas.clamp(max=50.0)  # huge densities make finite differences meaningless
    if min_transmittance:
        # The light reaching each sample: some ray stops, and no sample sits at the
        # threshold, where the weights jump.
        tau = sigmas * deltas
        reaching = torch.cat([torch.exp(-(t.cumsum(0) - t)) for t in tau.split(offsets.diff().tolist())])
        assert (reaching < min_transmittance).any()
        assert (reaching - min_transmittance).abs().min() > 1e-4
    sigmas.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: volume_weights(s, deltas, offsets, min_transmittance), (sigmas,))


@native
def test_scalar_exp_path_matches_reference_too():
    # The kernels run AVX-512 exps in blocks of 16 samples where the CPU has AVX-512, one
    # std::exp per value elsewhere: the reference test again with torch's (and so
    # sparse3d._C's) vector width capped, in a process of its own.
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"} | {"ATEN_CPU_CAPABILITY": "default"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          f"{__file__}::test_matches_reference_forward_and_backward"], env=env, capture_output=True, text=True)
    assert run.returncode == 0 and " passed" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]


@native
def test_opcheck():
    sigmas, deltas, offsets = random_rays(20, seed=4, dtype=torch.float32, max_samples=8)
    opcheck(torch.ops.sparse3d.volume_weights.default, (sigmas.requires_grad_(True), deltas, offsets, 1e-3))


@native
def test_bitwise_equal_across_thread_counts():
    sigmas, deltas, offsets = random_rays(5000, seed=5, dtype=torch.float32, max_samples=200)
    g = torch.Generator().manual_seed(6)
    v_weights = torch.randn(sigmas.shape, generator=g)
    v_transmittance = torch.randn(len(offsets) - 1, generator=g)
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            results.append(weights_and_grad(volume_weights, sigmas, deltas, offsets, 1e-3, v_weights, v_transmittance))
    finally:
        torch.set_num_threads(previous)
    assert all(torch.equal(a, b) for r in results[1:] for a, b in zip(results[0], r))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu_and_repeats_bitwise(dtype):
    # One CUDA thread per ray walks volume.h's loop as a CPU task does; only exp may round
    # differently (CUDA's libdevice against glibc), so the kernels agree to rounding, and two
    # CUDA runs bit for bit (one writer per output).
    sigmas, deltas, offsets = random_rays(5000, seed=5, dtype=dtype, max_samples=200)
    g = torch.Generator().manual_seed(6)
    v_weights = torch.randn(sigmas.shape, generator=g, dtype=dtype)
    v_transmittance = torch.randn(len(offsets) - 1, generator=g, dtype=dtype)
    args = (sigmas, deltas, offsets, 1e-3, v_weights, v_transmittance)
    cpu = weights_and_grad(volume_weights, *args)
    cuda, again = ([t.cpu() for t in weights_and_grad(volume_weights, *(a.cuda() if torch.is_tensor(a) else a for a in args))]
                   for _ in range(2))
    for a, b, c in zip(cpu, cuda, again):
        torch.testing.assert_close(b, a, **TOLERANCES[dtype])
        assert torch.equal(b, c)
    opcheck(torch.ops.sparse3d.volume_weights.default,
            (sigmas[:200].cuda().requires_grad_(True), deltas[:200].cuda(), torch.tensor([0, 50, 50, 200], device="cuda"), 1e-3))


@native
def test_works_under_torch_compile_with_autograd():
    sigmas, deltas, offsets = random_rays(30, seed=8, dtype=torch.float32, max_samples=10)
    sigmas.requires_grad_(True)

    def loss(s):
        weights, transmittance = volume_weights(s.relu(), deltas, offsets, 1e-3)
        return weights.square().sum() + transmittance.sum()

    # fullgraph: the ops must trace through their fake kernels without a graph break.
    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    (g_compiled,) = torch.autograd.grad(compiled(sigmas), sigmas)
    (g_eager,) = torch.autograd.grad(loss(sigmas), sigmas)
    torch.testing.assert_close(g_compiled, g_eager)


@pytest.mark.parametrize("per_ray_background", [False, True])
def test_composite_matches_a_loop(per_ray_background):
    g = torch.Generator().manual_seed(9)
    offsets = torch.tensor([0, 3, 3, 4, 8])
    R, S = len(offsets) - 1, int(offsets[-1])
    weights = torch.rand(S, generator=g, dtype=torch.float64)
    transmittance = torch.rand(R, generator=g, dtype=torch.float64)
    values = torch.randn(S, 3, generator=g, dtype=torch.float64)
    background = torch.rand((R, 3) if per_ray_background else (3,), generator=g, dtype=torch.float64)
    sums = torch.zeros(R, 3, dtype=torch.float64)
    expected = torch.zeros(R, 3, dtype=torch.float64)
    for r in range(R):
        for i in range(offsets[r], offsets[r + 1]):
            sums[r] += weights[i] * values[i]
        expected[r] = sums[r] + transmittance[r] * (background[r] if per_ray_background else background)
    torch.testing.assert_close(composite(weights, transmittance, values, offsets, background), expected)
    torch.testing.assert_close(composite(weights, transmittance, values, offsets), sums)


@pytest.mark.parametrize(
    "sigmas, deltas, offsets, message",
    [
        (torch.ones(3, 1), torch.ones(3, 1), torch.tensor([0, 3]), r"sigmas and deltas must both be \[S\]"),
        (torch.ones(3), torch.ones(2), torch.tensor([0, 3]), r"sigmas and deltas must both be \[S\]"),
        (torch.ones(3, dtype=torch.long), torch.ones(3, dtype=torch.long), torch.tensor([0, 3]), "sigmas and deltas must be float32 or float64"),
        (torch.ones(3), torch.ones(3, dtype=torch.float64), torch.tensor([0, 3]), "of one dtype"),
        (torch.ones(3), torch.ones(3), torch.tensor([0, 3], dtype=torch.int32), "offsets must be int64"),
        (torch.ones(3), torch.ones(3), torch.tensor([[0, 3]]), r"offsets must be int64 \[R \+ 1\]"),
    ],
)
def test_bad_arguments(sigmas, deltas, offsets, message):
    with pytest.raises(ValueError, match=message):
        volume_weights(sigmas, deltas, offsets)


@native
def test_inconsistent_offsets_are_rejected_by_the_kernel():
    with pytest.raises(RuntimeError, match="offsets must start at 0 and end at 3"):
        volume_weights(torch.ones(3), torch.ones(3), torch.tensor([0, 2]))
    with pytest.raises(RuntimeError, match="non-decreasing"):
        volume_weights(torch.ones(3), torch.ones(3), torch.tensor([0, 2, 1, 3]))
