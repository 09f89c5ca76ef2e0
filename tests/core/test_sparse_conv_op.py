"""The sparse_conv op: native kernel against the torch reference (forward and both
gradients), gradcheck, opcheck, bitwise equality across thread counts and runs."""

import pytest
import torch
from sparse_cases import conv_case, random_coords

import sparse3d
from sparse3d.core.conv import sparse_conv, sparse_conv_ref
from sparse3d.core.kernel_map import invert_kernel_map, kernel_map


@pytest.mark.parametrize("cin,cout", [(3, 5), (16, 16), (32, 64), (7, 128)])
def test_sparse_conv_matches_reference(cin, cout):
    feats, weight, nbr = conv_case(0, n=300, m=250, k=27, cin=cin, cout=cout)
    out, ref = sparse_conv(feats, weight, nbr), sparse_conv_ref(feats, weight, nbr)
    torch.testing.assert_close(out, ref)
    v = torch.randn_like(ref)
    grads = torch.autograd.grad(out, (feats, weight), v)
    grads_ref = torch.autograd.grad(ref, (feats, weight), v)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref)


def test_sparse_conv_float32_matches_reference():
    feats, weight, nbr = conv_case(1, n=500, m=400, k=27, cin=16, cout=32, dtype=torch.float32)
    # float32 sums of ~27 * 16 products: rtol 1e-5 on O(1) values.
    torch.testing.assert_close(sparse_conv(feats, weight, nbr), sparse_conv_ref(feats, weight, nbr), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not sparse3d.HAS_NATIVE, reason="the reference has no backward of its own")
def test_a_submanifold_map_passed_as_its_own_transpose_gives_the_same_gradients():
    # With inv = nbr the backward reads nbr with the taps mirrored instead of a stored
    # transpose; on a submanifold map the two are the same linear map.
    coords = random_coords(3, (6, 7, 8), 2, 0.3)
    nbr = kernel_map(coords, coords, (6, 7, 8), (6, 7, 8), (3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1))
    gen = torch.Generator().manual_seed(4)
    feats = torch.randn(coords.shape[0], 5, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(27, 5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    v = torch.randn(coords.shape[0], 4, generator=gen, dtype=torch.float64)
    mirrored = torch.autograd.grad(sparse_conv(feats, weight, nbr, nbr), (feats, weight), v)
    stored = torch.autograd.grad(sparse_conv(feats, weight, nbr, invert_kernel_map(nbr, coords.shape[0])), (feats, weight), v)
    for a, b in zip(mirrored, stored):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_sparse_conv_gradcheck():
    feats, weight, nbr = conv_case(2, n=12, m=10, k=8, cin=3, cout=2, hit=0.6)
    assert torch.autograd.gradcheck(sparse_conv, (feats, weight, nbr))
    bias = torch.randn(2, dtype=feats.dtype, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, w, b: sparse_conv(f, w, nbr, None, b), (feats, weight, bias))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sparse_conv_bias_starts_every_row(dtype):
    # Rows with no neighbour at all are exactly the bias; the others match the reference
    # (whose bias is added after the taps), and the bias gradient is the column sum.
    feats, weight, nbr = conv_case(6, n=200, m=150, k=27, cin=16, cout=32, dtype=dtype)
    nbr[:5] = -1
    gen = torch.Generator().manual_seed(7)
    bias = torch.randn(32, dtype=dtype, generator=gen).requires_grad_()
    out = sparse_conv(feats, weight, nbr, None, bias)
    assert torch.equal(out[:5], bias.detach().expand(5, 32))
    tol = {} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}  # float32 sums of 432 products
    torch.testing.assert_close(out, sparse_conv_ref(feats, weight, nbr, bias), **tol)
    v = torch.randn(out.shape, dtype=dtype, generator=gen)
    torch.testing.assert_close(torch.autograd.grad(out, bias, v)[0], v.sum(0), **tol)
    with pytest.raises(ValueError, match=r"bias must be .* \[32\]"):
        sparse_conv(feats, weight, nbr, None, bias[:3])


def test_sparse_conv_empty_rows_and_taps():
    feats, weight, _ = conv_case(3, n=5, m=4, k=3, cin=2, cout=3)
    nbr = torch.full((4, 3), -1, dtype=torch.int32)
    out = sparse_conv(feats, weight, nbr)
    assert torch.equal(out, torch.zeros(4, 3, dtype=feats.dtype))
    g_feats, g_weight = torch.autograd.grad(out.sum(), (feats, weight))
    assert torch.equal(g_feats, torch.zeros_like(feats)) and torch.equal(g_weight, torch.zeros_like(weight))
    assert sparse_conv(feats, weight, nbr[:0]).shape == (0, 3)


def test_sparse_conv_rejects_bad_shapes():
    feats, weight, nbr = conv_case(4, n=5, m=4, k=3, cin=2, cout=3)
    with pytest.raises(ValueError, match=r"weight must be \[K, Cin, Cout\] = \[3, 2, Cout\]"):
        sparse_conv(feats, weight[:, :1], nbr)
    with pytest.raises(ValueError, match="nbr must be an int32"):
        sparse_conv(feats, weight, nbr.long())
    with pytest.raises(TypeError, match="dtype"):
        sparse_conv(feats, weight.float(), nbr)


@pytest.mark.skipif(not sparse3d.HAS_NATIVE, reason="native kernel checks")
def test_sparse_conv_opcheck():
    feats, weight, nbr = conv_case(5, n=20, m=15, k=27, cin=4, cout=16)
    torch.library.opcheck(torch.ops.sparse3d.sparse_conv.default, (feats, weight, nbr))
    bias = torch.randn(16, dtype=feats.dtype, requires_grad=True)
    torch.library.opcheck(torch.ops.sparse3d.sparse_conv.default, (feats, weight, nbr, None, bias))
    v = torch.randn(15, 16, dtype=feats.dtype)
    torch.library.opcheck(torch.ops.sparse3d.sparse_conv_bwd_weight.default, (feats.detach(), v, nbr))


def _forward_backward(threads: int, feats, weight, nbr, v):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = sparse_conv(feats, weight, nbr)
        return (out, *torch.autograd.grad(out, (feats, weight), v))
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("cout", [32, 24])
def test_sparse_conv_is_bitwise_identical_across_thread_counts(cout):
    # Several weight-gradient chunks (M > 2048) and many row tasks, so two threads split
    # the work differently from one.
    feats, weight, nbr = conv_case(6, n=9000, m=8000, k=27, cin=16, cout=cout, dtype=torch.float32)
    v = torch.randn(8000, cout, generator=torch.Generator().manual_seed(7))
    one = _forward_backward(1, feats, weight, nbr, v)
    for threads in (2, 2, 1):
        for a, b in zip(one, _forward_backward(threads, feats, weight, nbr, v)):
            assert torch.equal(a, b)
