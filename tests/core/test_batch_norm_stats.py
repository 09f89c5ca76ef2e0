"""Deterministic batch-norm statistics and the fused affine + residual + ReLU step: native
kernels against the torch references (on each device), torch.var_mean, gradient checks,
bitwise equality across thread counts, and the CUDA kernels against the CPU ones."""

import pytest
import torch
from devices import DEVICES

import sparse3d
from sparse3d.core.batch_norm import (
    affine_act,
    affine_act_ref,
    batch_norm_bwd_reduce,
    batch_norm_bwd_reduce_ref,
    batch_norm_stats,
    batch_norm_stats_ref,
)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [0, 1, 4095, 4097, 20000])
def test_stats_match_reference_and_torch(n, device):
    gen = torch.Generator().manual_seed(n)
    x = (torch.randn(n, 5, generator=gen, dtype=torch.float64) * 3 + 100.0).to(device)  # large mean: M2 must stay stable
    mean, var = batch_norm_stats(x)
    ref_mean, ref_var = batch_norm_stats_ref(x)
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(var, ref_var)
    if n > 0:
        torch.testing.assert_close(var, x.var(0, unbiased=False))
    v = torch.randn(n, 5, generator=gen, dtype=torch.float64).to(device)
    for a, b in zip(batch_norm_bwd_reduce(v, x, mean), batch_norm_bwd_reduce_ref(v, x, mean)):
        torch.testing.assert_close(a, b)


def test_stats_are_bitwise_identical_across_thread_counts():
    gen = torch.Generator().manual_seed(0)
    x, v = torch.randn(50000, 32, generator=gen), torch.randn(50000, 32, generator=gen)
    previous = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 2):
            torch.set_num_threads(threads)
            mean, var = batch_norm_stats(x)
            runs.append((mean, var, *batch_norm_bwd_reduce(v, x, mean)))
    finally:
        torch.set_num_threads(previous)
    for run in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], run))


def test_stats_reject_bad_input():
    with pytest.raises(ValueError, match=r"values must be a float \[N, C\]"):
        batch_norm_stats(torch.ones(3, dtype=torch.int64))


@pytest.mark.skipif(not sparse3d.HAS_NATIVE, reason="native kernel checks")
def test_stats_opcheck():
    x = torch.randn(100, 4)
    torch.library.opcheck(torch.ops.sparse3d.batch_norm_stats.default, (x,))
    torch.library.opcheck(torch.ops.sparse3d.batch_norm_bwd_reduce.default, (torch.randn(100, 4), x, x.mean(0)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_affine_act_matches_reference_with_gradients(residual, relu, device):
    gen = torch.Generator().manual_seed(int(residual) * 2 + int(relu))
    x = torch.randn(3000, 16, generator=gen).to(device)
    scale, shift = torch.randn(16, generator=gen).to(device), torch.randn(16, generator=gen).to(device)
    res = torch.randn(3000, 16, generator=gen).to(device) if residual else None
    out, ref = affine_act(x, scale, shift, res, relu), affine_act_ref(x, scale, shift, res, relu)
    if device == "cpu":  # float32 in the same operation order: bit for bit the reference
        assert torch.equal(out, ref)
    else:  # nvcc contracts x * scale + shift into one FMA (one rounding where torch has two)
        torch.testing.assert_close(out, ref)
    if relu:
        assert (affine_act(x, scale, shift, res, relu) == 0).float().mean() > 0.3  # the ReLU does clip
    args = [t[:40].double().requires_grad_() if t.dim() == 2 else t.double().requires_grad_() for t in (x, scale, shift)]
    res64 = res[:40].double().requires_grad_() if residual else None
    torch.autograd.gradcheck(lambda a, b, c, r: affine_act(a, b, c, r, relu), (*args, res64))


@pytest.mark.skipif(not sparse3d.HAS_NATIVE, reason="native kernel checks")
def test_affine_act_opcheck_and_bad_input():
    x = torch.randn(100, 4)
    torch.library.opcheck(torch.ops.sparse3d.affine_act.default, (x, torch.randn(4), torch.randn(4), torch.randn(100, 4), True))
    torch.library.opcheck(torch.ops.sparse3d.affine_act.default, (x, torch.randn(4), torch.randn(4), None, False))
    with pytest.raises(RuntimeError, match=r"scale and shift must be Float \[4\]"):
        affine_act(x, torch.randn(3), torch.randn(4))
    with pytest.raises(RuntimeError, match="residual must be Float"):
        affine_act(x, torch.randn(4), torch.randn(4), torch.randn(100, 3))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu_and_repeats_bitwise(dtype):
    # The CUDA kernels run batch_norm.h's chunk statistics and combine the chunks in order,
    # as the CPU does, so they match it to double rounding (nvcc may fuse a multiply-add the
    # CPU rounds twice) and a second CUDA run gives the same bits (the .cu promise: results
    # do not depend on the launch shape). 3 chunks with a ragged tail; 40 channels.
    gen = torch.Generator().manual_seed(11)
    x = (torch.randn(10000, 40, generator=gen, dtype=torch.float64) * 2 + 50.0).to(dtype)
    v = torch.randn(10000, 40, generator=gen, dtype=torch.float64).to(dtype)
    scale, shift = torch.randn(40, generator=gen, dtype=dtype), torch.randn(40, generator=gen, dtype=dtype)
    res = torch.randn(10000, 40, generator=gen, dtype=dtype)

    def run(device):
        xd = x.to(device)
        mean, var = batch_norm_stats(xd)
        sums = batch_norm_bwd_reduce(v.to(device), xd, mean)
        out = affine_act(xd - 50.0, scale.to(device), shift.to(device), res.to(device), True)
        return [t.cpu() for t in (mean, var, *sums, out)]

    cpu, cuda, again = run("cpu"), run("cuda"), run("cuda")
    tol = {"rtol": 1e-6, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    for name, a, b, c in zip(("mean", "var", "sum_v", "sum_v_centred", "affine_act"), cpu, cuda, again):
        torch.testing.assert_close(b, a, **tol, msg=name)
        assert torch.equal(b, c), name


@pytest.mark.cuda
def test_cuda_opcheck():
    x = torch.randn(100, 4, device="cuda")
    scale, shift = torch.randn(4, device="cuda"), torch.randn(4, device="cuda")
    torch.library.opcheck(torch.ops.sparse3d.batch_norm_stats.default, (x,))
    torch.library.opcheck(torch.ops.sparse3d.batch_norm_bwd_reduce.default, (torch.randn_like(x), x, x.mean(0)))
    torch.library.opcheck(torch.ops.sparse3d.affine_act.default, (x, scale, shift, torch.randn_like(x), True))
    torch.library.opcheck(torch.ops.sparse3d.affine_act.default, (x, scale, shift, None, False))
