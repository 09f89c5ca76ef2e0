"""SparseBatchNorm1d and column_sum: parity with torch, bitwise independence of the
thread count."""

import pytest
import torch
from sparse_cases import random_voxels
from torch import nn

from sparse3d.core.column_sum import column_sum
from sparse3d.nn.norm import BatchNorm2d, SparseBatchNorm1d
from sparse3d.nn.sequential import SparseSequential


def _with_threads(threads, fn):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(previous)


def test_column_sum_matches_torch_and_ignores_threads():
    x = torch.randn(50000, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(column_sum(x.double()), x.double().sum(0))
    assert torch.equal(_with_threads(1, lambda: column_sum(x)), _with_threads(2, lambda: column_sum(x)))
    assert column_sum(torch.zeros(0, 3)).tolist() == [0.0, 0.0, 0.0]


def _run(bn, x, v):
    x = x.clone().requires_grad_(True)
    out = bn(x)
    out.backward(v)
    return [out.detach(), x.grad, bn.weight.grad.clone(), bn.bias.grad.clone(), bn.running_mean.clone(), bn.running_var.clone()]


def test_sparse_batch_norm_matches_torch_in_training_and_eval():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3000, 8, generator=gen, dtype=torch.float64) * 2 + 0.5
    v = torch.randn(3000, 8, generator=gen, dtype=torch.float64)
    ours, ref = SparseBatchNorm1d(8, eps=1e-3, momentum=0.01).double(), nn.BatchNorm1d(8, eps=1e-3, momentum=0.01).double()
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5, generator=gen)
        ours.bias.normal_(generator=gen)
    ref.load_state_dict(ours.state_dict())
    for a, b in zip(_run(ours, x, v), _run(ref, x, v)):
        torch.testing.assert_close(a, b)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x), ref(x))
    assert list(ours.state_dict()) == list(ref.state_dict())


@pytest.mark.parametrize("training", [True, False])
def test_fused_residual_relu_matches_torch(training):
    # normalize(x, residual, relu=True) == relu(BatchNorm1d(x) + residual), values and all
    # gradients, in training mode (batch statistics) and eval mode (running statistics).
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2000, 8, generator=gen, dtype=torch.float64) * 2 + 0.5
    r = torch.randn(2000, 8, generator=gen, dtype=torch.float64)
    v = torch.randn(2000, 8, generator=gen, dtype=torch.float64)
    ours, ref = SparseBatchNorm1d(8, eps=1e-3).double(), nn.BatchNorm1d(8, eps=1e-3).double()
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5, generator=gen)
        ours.bias.normal_(generator=gen)
        ours.running_mean.normal_(generator=gen)
        ours.running_var.uniform_(0.5, 2.0, generator=gen)
    ref.load_state_dict(ours.state_dict())
    ours.train(training), ref.train(training)
    results = []
    for fn in (lambda a, b: ours.normalize(a, residual=b, relu=True), lambda a, b: torch.relu(ref(a) + b)):
        a, b = x.clone().requires_grad_(), r.clone().requires_grad_()
        out = fn(a, b)
        out.backward(v)
        results.append([out.detach(), a.grad, b.grad])
    assert (results[1][0] == 0).any() and (results[1][2] == 0).any()  # the ReLU clips
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)


def test_sequential_fuses_batch_norm_and_relu():
    x = random_voxels(4, channels=6, dtype=torch.float32)
    bn = SparseBatchNorm1d(6)
    fused = SparseSequential(bn, nn.ReLU())(x).feats
    assert torch.equal(fused, torch.relu(bn(x.feats)))


def test_sparse_batch_norm_is_bitwise_identical_across_thread_counts():
    gen = torch.Generator().manual_seed(2)
    x, v = torch.randn(40000, 16, generator=gen), torch.randn(40000, 16, generator=gen)
    runs = [_with_threads(t, lambda: _run(SparseBatchNorm1d(16), x, v)) for t in (1, 2, 2)]
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            assert torch.equal(a, b)


def test_sparse_batch_norm_rejects_bad_input():
    with pytest.raises(ValueError, match=r"feats must be \[N, 4\]"):
        SparseBatchNorm1d(4)(torch.randn(10, 3))
    with pytest.raises(ValueError, match="at least 2 rows"):
        SparseBatchNorm1d(4)(torch.randn(1, 4))


def test_batch_norm_2d_matches_torch_in_training_and_eval():
    torch.manual_seed(3)
    ours, reference = BatchNorm2d(5, eps=1e-3, momentum=0.01).double(), nn.BatchNorm2d(5, eps=1e-3, momentum=0.01).double()
    with torch.no_grad():
        for bn in (ours, reference):
            bn.weight.copy_(torch.linspace(0.5, 2, 5))
            bn.bias.copy_(torch.linspace(-1, 1, 5))
    assert list(ours.state_dict()) == list(reference.state_dict())
    x = torch.randn(2, 5, 7, 6, dtype=torch.float64, requires_grad=True)
    out, out_ref = ours(x), reference(x)
    torch.testing.assert_close(out, out_ref)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, [x, ours.weight, ours.bias], g),
                    torch.autograd.grad(out_ref, [x, reference.weight, reference.bias], g)):
        torch.testing.assert_close(a, b)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, name), getattr(reference, name))
    ours.eval(), reference.eval()
    torch.testing.assert_close(ours(x), reference(x))


def test_batch_norm_2d_is_bitwise_identical_across_thread_counts():
    gen = torch.Generator().manual_seed(4)
    x, v = torch.randn(2, 16, 90, 90, generator=gen), torch.randn(2, 16, 90, 90, generator=gen)
    runs = [_with_threads(t, lambda: _run(BatchNorm2d(16), x, v)) for t in (1, 2)]
    for a, b in zip(*runs):
        assert torch.equal(a, b)
