"""Deterministic batch-norm statistics: native kernels against the torch references,
torch.var_mean, and bitwise equality across thread counts."""

import pytest
import torch

import sparse3d
from sparse3d.core.batch_norm import batch_norm_bwd_reduce, batch_norm_bwd_reduce_ref, batch_norm_stats, batch_norm_stats_ref


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
