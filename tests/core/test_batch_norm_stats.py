"""Deterministic batch-norm statistics and the fused affine + residual + ReLU step: native
kernels against the torch references, torch.var_mean, gradient checks, and bitwise
equality across thread counts."""

import pytest
import torch

import sparse3d
from sparse3d.core.batch_norm import (
    affine_act,
    affine_act_ref,
    batch_norm_bwd_reduce,
    batch_norm_bwd_reduce_ref,
    batch_norm_stats,
    batch_norm_stats_ref,
)


@pytest.mark.parametrize("n", [0, 1, 4095, 4097, 20000])
def test_stats_match_reference_and_torch(n):
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(n, 5, generator=gen, dtype=torch.float64) * 3 + 100.0  # large mean: M2 must stay stable
    mean, var = batch_norm_stats(x)
    ref_mean, ref_var = batch_norm_stats_ref(x)
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(var, ref_var)
    if n > 0:
        torch.testing.assert_close(var, x.var(0, unbiased=False))
    v = torch.randn(n, 5, generator=gen, dtype=torch.float64)
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


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_affine_act_matches_reference_with_gradients(residual, relu):
    gen = torch.Generator().manual_seed(int(residual) * 2 + int(relu))
    x = torch.randn(3000, 16, generator=gen)
    scale, shift = torch.randn(16, generator=gen), torch.randn(16, generator=gen)
    res = torch.randn(3000, 16, generator=gen) if residual else None
    # float32 in the same operation order: bit for bit the reference.
    assert torch.equal(affine_act(x, scale, shift, res, relu), affine_act_ref(x, scale, shift, res, relu))
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
