"""The deterministic linear map: parity with F.linear in every gradient, odd shapes for
the tile kernels' edges, fallbacks, opcheck; thread and ISA independence is checked by
tests/test_determinism_matrix.py."""

import pytest
import torch
import torch.nn.functional as F
from torch.library import opcheck

import sparse3d
from sparse3d.core.column_sum import add_to_rows
from sparse3d.core.linear import linear
from sparse3d.nn.linear import Linear

native = pytest.mark.skipif(not sparse3d.HAS_NATIVE, reason="native extension not built")


def _grads(fn, x, weight, bias, cotangent):
    out = fn(x, weight, bias)
    return [out, *torch.autograd.grad(out, [t for t in (x, weight, bias) if t is not None], cotangent)]


@pytest.mark.parametrize(
    "rows, i, o, bias",
    [
        (1, 1, 1, True),
        (5, 3, 2, False),  # fewer rows than a tile, narrower than a vector
        (97, 17, 33, True),  # ragged row tiles and vector tails
        (1300, 130, 70, True),  # several k blocks and weight-gradient chunks with a tail
        (0, 4, 6, True),  # no rows: zero weight gradient, empty output
    ],
)
def test_matches_f_linear_forward_and_every_gradient(rows, i, o, bias):
    g = torch.Generator().manual_seed(rows + i + o)
    x = torch.randn(rows, i, generator=g).requires_grad_()
    weight = torch.randn(o, i, generator=g).requires_grad_()
    b = torch.randn(o, generator=g).requires_grad_() if bias else None
    cotangent = torch.randn(rows, o, generator=g)
    for ours, ref in zip(_grads(linear, x, weight, b, cotangent), _grads(F.linear, x, weight, b, cotangent)):
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-4)


def test_batched_input_and_module_match_nn_linear():
    torch.manual_seed(0)
    ours, ref = Linear(12, 20), torch.nn.Linear(12, 20)
    ref.load_state_dict(ours.state_dict())
    assert list(ours.state_dict()) == ["weight", "bias"]
    x = torch.randn(3, 7, 12)
    torch.testing.assert_close(ours(x), ref(x))


@native
def test_each_element_is_one_fma_chain_in_k_order():
    # The scalar twin of the tile kernels, written out: bias, then fma over k in order.
    g = torch.Generator().manual_seed(1)
    x, weight, bias = torch.randn(10, 300, generator=g), torch.randn(19, 300, generator=g), torch.randn(19, generator=g)
    out = linear(x, weight, bias)
    expected = bias.double().clone().expand(10, 19).clone()
    for k in range(300):  # float32 rounding after each exact product-add = an fma
        expected = (expected + x[:, k, None].double() * weight[None, :, k].double()).float().double()
    assert torch.equal(out, expected.float())


def test_other_dtypes_take_f_linear_and_gradcheck():
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(linear, (x, weight, bias))


@native
def test_opcheck():
    x, weight, bias = torch.randn(40, 8, requires_grad=True), torch.randn(16, 8, requires_grad=True), torch.randn(16, requires_grad=True)
    opcheck(torch.ops.sparse3d.linear_rows.default, (x, weight, bias))
    opcheck(torch.ops.sparse3d.linear_bwd_weight.default, (torch.randn(40, 16), x.detach()))


@native
def test_bad_arguments_name_the_operand():
    with pytest.raises(RuntimeError, match=r"weight must be \[O, 8\]"):
        torch.ops.sparse3d.linear_rows(torch.randn(4, 8), torch.randn(3, 7))
    with pytest.raises(RuntimeError, match="x must be a float32 2-D tensor"):
        torch.ops.sparse3d.linear_rows(torch.randn(4, 8).double(), torch.randn(3, 8))


def test_add_to_rows_matches_broadcast_and_gradcheck():
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    row = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(add_to_rows(x, row), x + row)
    assert torch.autograd.gradcheck(add_to_rows, (x, row))
    with pytest.raises(ValueError, match=r"row must have shape \[3, 4\]"):
        add_to_rows(x, torch.randn(4))
