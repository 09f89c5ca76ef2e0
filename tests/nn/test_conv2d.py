"""The deterministic dense Conv2d against nn.Conv2d, and the in-place swap."""

import pytest
import torch
from torch import nn
from torch.library import opcheck

from sparse3d.core.linear import conv2d_nhwc, linear
from sparse3d.nn.conv2d import (
    Conv2d,
    ConvTranspose2d,
    _Im2Col,
    deterministic_,
    shared_input_conv2d,
)
from sparse3d.nn.linear import Linear


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=1),
    dict(kernel_size=(3, 5), padding=(1, 2), dilation=(2, 1), bias=False),
])
def test_matches_nn_conv2d_values_and_gradients(kwargs):
    torch.manual_seed(0)
    reference = nn.Conv2d(6, 5, **kwargs).double()
    ours = Conv2d(6, 5, **kwargs).double()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 6, 13, 11, dtype=torch.float64, requires_grad=True)
    out_ref, out = reference(x), ours(x)
    torch.testing.assert_close(out, out_ref)
    g = torch.randn_like(out)
    grads_ref = torch.autograd.grad(out_ref, [x, *reference.parameters()], g)
    grads = torch.autograd.grad(out, [x, *ours.parameters()], g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)


def test_float32_takes_the_deterministic_linear():
    torch.manual_seed(1)
    reference, ours = nn.Conv2d(8, 4, 3, padding=1), Conv2d(8, 4, 3, padding=1)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(1, 8, 20, 20)
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)


def test_swap_keeps_parameters_and_names():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.SiLU(), nn.Sequential(nn.Linear(8, 2)))
    names = list(model.state_dict())
    x = torch.randn(2, 3, 8, 8)
    before = model(x)
    deterministic_(model)
    assert type(model[0]) is Conv2d and type(model[2][0]) is Linear
    assert list(model.state_dict()) == names
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


def test_unsupported_convolutions_are_refused():
    with pytest.raises(ValueError, match="groups=1"):
        Conv2d(4, 4, 3, groups=2)
    with pytest.raises(ValueError, match="zero padding"):
        deterministic_(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")))


@pytest.mark.parametrize("stride,bias", [(1, False), (2, False), ((2, 3), True)])
def test_transposed_matches_nn_conv_transpose2d_values_and_gradients(stride, bias):
    torch.manual_seed(5)
    reference = nn.ConvTranspose2d(6, 4, stride, stride=stride, bias=bias).double()
    ours = ConvTranspose2d(6, 4, stride, stride=stride, bias=bias).double()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64, requires_grad=True)
    out_ref, out = reference(x), ours(x)
    torch.testing.assert_close(out, out_ref)
    g = torch.randn_like(out)
    grads_ref = torch.autograd.grad(out_ref, [x, *reference.parameters()], g)
    grads = torch.autograd.grad(out, [x, *ours.parameters()], g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)


def test_transposed_is_bitwise_identical_across_thread_counts():
    torch.manual_seed(6)
    layer, x = ConvTranspose2d(32, 16, 2, stride=2), torch.randn(2, 32, 40, 40)
    runs = []
    for threads in (1, 2):
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            out = layer(x)
            runs.append((out, *torch.autograd.grad(out.square().sum(), layer.parameters())))
        finally:
            torch.set_num_threads(previous)
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_transposed_refuses_overlapping_kernels():
    with pytest.raises(ValueError, match="kernel_size == stride"):
        ConvTranspose2d(4, 4, 3, stride=2)


def test_shared_input_convolutions_equal_the_layers_one_by_one():
    torch.manual_seed(7)
    convs = [Conv2d(8, out, 3, padding=1, bias=bias) for out, bias in ((2, True), (16, True), (3, False))]
    x = torch.randn(2, 8, 11, 9, requires_grad=True)
    fused = shared_input_conv2d(x, convs)
    for out, conv in zip(fused, convs, strict=True):
        assert torch.equal(out, conv(x))
    g = [torch.randn_like(o) for o in fused]
    grads = torch.autograd.grad(fused, [x, *convs[1].parameters()], g)
    grads_ref = torch.autograd.grad([c(x) for c in convs], [x, *convs[1].parameters()], g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="share in_channels"):
        shared_input_conv2d(x, [convs[0], Conv2d(8, 2, 1)])


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=1, bias=False),
    dict(kernel_size=(3, 5), padding=(1, 2), dilation=(2, 1)),
    dict(kernel_size=(2, 3), stride=(3, 2)),  # rows and columns the kernel never reaches
])
@pytest.mark.parametrize("c_in, c_out", [(5, 3), (40, 70), (200, 33)])  # 200 taps x channels: k-blocks inside a tap
@pytest.mark.parametrize("shape", [(2, 13, 11), (1, 40, 37)])  # 1 x 37 x 37 outputs: chunks split image rows
def test_native_convolution_has_the_bits_of_im2col_and_linear(kwargs, c_in, c_out, shape):
    torch.manual_seed(3)
    conv = Conv2d(c_in, c_out, **kwargs)
    x = torch.randn(shape[0], c_in, *shape[1:])
    padded = conv.padded(x).requires_grad_()
    taps = (conv.kernel_size, conv.stride, conv.dilation)
    reference = linear(_Im2Col.apply(padded, *taps), conv.matrix(), conv.bias)
    g = torch.randn_like(reference)
    inputs = [padded, *conv.parameters()]
    reference_grads = torch.autograd.grad(reference, inputs, g)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out = conv2d_nhwc(padded, conv.matrix(), conv.bias, *taps)
            assert out is not None and torch.equal(out, reference)
            for grad, reference_grad in zip(torch.autograd.grad(out, inputs, g), reference_grads, strict=True):
                assert torch.equal(grad, reference_grad)
            with torch.no_grad():
                assert torch.equal(conv(x), reference.permute(0, 3, 1, 2))
                fused = shared_input_conv2d(x, [conv, conv])
            assert torch.equal(fused[0], fused[1]) and torch.equal(fused[0], reference.permute(0, 3, 1, 2))
    finally:
        torch.set_num_threads(threads)


def test_native_convolution_opcheck():
    padded, weight, bias = torch.randn(2, 7, 6, 3), torch.randn(4, 2 * 3 * 3), torch.randn(4)
    opcheck(torch.ops.sparse3d.conv2d_nhwc.default, (padded, weight, bias, (2, 3), (2, 1), (1, 1)))
    v_out = torch.randn(2, 3, 4, 4)
    opcheck(torch.ops.sparse3d.conv2d_nhwc_bwd_input.default, (v_out, weight, [2, 7, 6, 3], (2, 3), (2, 1), (1, 1)))
    opcheck(torch.ops.sparse3d.conv2d_nhwc_bwd_weight.default, (v_out, padded, (2, 3), (2, 1), (1, 1)))
