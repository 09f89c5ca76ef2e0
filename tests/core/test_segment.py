"""segment_reduce: native kernel vs torch reference (on each device), gradients,
determinism, the CUDA kernel against the CPU one, bad input."""

import pytest
import torch
from devices import DEVICES
from torch.library import opcheck

import sparse3d
from sparse3d.core.segment import segment_reduce, segment_reduce_ref

native = pytest.mark.skipif(not sparse3d.HAS_NATIVE, reason="native extension not built")


def random_segments(n_segments: int, channels: int, seed: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, 6, (n_segments,), generator=g)
    counts[0] = 0  # always include an empty segment
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    values = torch.randn(int(offsets[-1]), channels, generator=g, dtype=dtype)
    return values, offsets


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_forward_and_backward(reduce, seed, device):
    values, offsets = (t.to(device) for t in random_segments(200, 7, seed))
    values.requires_grad_(True)
    out, ref = segment_reduce(values, offsets, reduce), segment_reduce_ref(values, offsets, reduce)
    torch.testing.assert_close(out, ref)
    cotangent = torch.randn_like(ref)
    (g_out,) = torch.autograd.grad(out, values, cotangent)
    (g_ref,) = torch.autograd.grad(ref, values, cotangent)
    torch.testing.assert_close(g_out, g_ref)


def test_hand_worked_values():
    values = torch.tensor([[1.0, -1.0], [3.0, 5.0], [2.0, 0.0]])
    offsets = torch.tensor([0, 2, 2, 3])
    assert segment_reduce(values, offsets, "sum").tolist() == [[4.0, 4.0], [0.0, 0.0], [2.0, 0.0]]
    assert segment_reduce(values, offsets, "mean").tolist() == [[2.0, 2.0], [0.0, 0.0], [2.0, 0.0]]
    assert segment_reduce(values, offsets, "max").tolist() == [[3.0, 5.0], [0.0, 0.0], [2.0, 0.0]]


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_float64_gradcheck(reduce):
    values, offsets = random_segments(6, 3, seed=3, dtype=torch.float64)
    values.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: segment_reduce(v, offsets, reduce), (values,))


@native
@pytest.mark.parametrize("reduce", ["sum", "max"])
def test_opcheck(reduce):
    values, offsets = random_segments(20, 4, seed=4)
    opcheck(torch.ops.sparse3d.segment_reduce.default, (values.requires_grad_(True), offsets, reduce))


@native
def test_bitwise_equal_across_thread_counts():
    values, offsets = random_segments(20000, 16, seed=5)
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            results.append(segment_reduce(values, offsets, "mean"))
    finally:
        torch.set_num_threads(previous)
    assert all(torch.equal(results[0], r) for r in results[1:])


@pytest.mark.parametrize(
    "values, offsets, reduce, error, message",
    [
        (torch.ones(3, 2), torch.tensor([0, 3]), "min", ValueError, "reduce must be one of"),
        (torch.ones(3), torch.tensor([0, 3]), "sum", ValueError, r"values must be a float \[N, C\]"),
        (torch.ones(3, 2, dtype=torch.long), torch.tensor([0, 3]), "sum", ValueError, "values must be a float"),
        (torch.ones(3, 2), torch.tensor([0, 3], dtype=torch.int32), "sum", ValueError, "offsets must be int64"),
    ],
)
def test_bad_arguments(values, offsets, reduce, error, message):
    with pytest.raises(error, match=message):
        segment_reduce(values, offsets, reduce)


@native
def test_inconsistent_offsets_are_rejected_by_the_kernel():
    with pytest.raises(RuntimeError, match="offsets must start at 0 and end at 3"):
        segment_reduce(torch.ones(3, 2), torch.tensor([0, 2]), "sum")
    with pytest.raises(RuntimeError, match="non-decreasing"):
        segment_reduce(torch.ones(3, 2), torch.tensor([0, 2, 1, 3]), "sum")


@native
def test_works_under_torch_compile_with_autograd():
    values, offsets = random_segments(50, 4, seed=6)
    values.requires_grad_(True)

    def loss(v):
        return segment_reduce(v.sin(), offsets, "max").square().sum()

    # fullgraph: the op must trace through its fake kernel without a graph break.
    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    (g_compiled,) = torch.autograd.grad(compiled(values), values)
    (g_eager,) = torch.autograd.grad(loss(values), values)
    torch.testing.assert_close(g_compiled, g_eager)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_long_segments_and_wide_rows_match_reference(reduce, device):
    # Few long segments with more channels than one task's block (64), and a ragged tail:
    # the shape of a column sum's chunks.
    g = torch.Generator().manual_seed(3)
    values = torch.randn(9000, 150, generator=g, dtype=torch.float64).to(device).requires_grad_(True)
    offsets = torch.tensor([0, 4096, 8192, 8192, 9000], device=device)
    out, ref = segment_reduce(values, offsets, reduce), segment_reduce_ref(values, offsets, reduce)
    torch.testing.assert_close(out, ref)
    cotangent = torch.randn(ref.shape, generator=g, dtype=torch.float64).to(device)
    torch.testing.assert_close(torch.autograd.grad(out, values, cotangent)[0], torch.autograd.grad(ref, values, cotangent)[0])


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_cuda_matches_cpu_bit_for_bit(reduce, dtype):
    # One thread per (segment, channel) output runs segment.h's loop over the rows in order,
    # as the CPU kernel does, with nothing to contract into an FMA: the same bits, values,
    # argmax rows and gradients, and the same again on a second run.
    values, offsets = random_segments(3000, 37, seed=7, dtype=dtype)
    values[5:9] = values[4]  # ties for max, broken toward the first row on both devices
    cotangent = torch.randn(3000, 37, generator=torch.Generator().manual_seed(8), dtype=dtype)
    runs = []
    for device in ("cpu", "cuda", "cuda"):
        v = values.to(device).requires_grad_(True)
        out, arg = torch.ops.sparse3d.segment_reduce(v, offsets.to(device), reduce)
        (grad,) = torch.autograd.grad(out, v, cotangent.to(device))
        assert out.device.type == arg.device.type == grad.device.type == device
        runs.append([t.cpu() for t in (out, arg, grad)])
    for run in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], run))


@pytest.mark.cuda
@pytest.mark.parametrize("reduce", ["sum", "max"])
def test_cuda_opcheck(reduce):
    values, offsets = random_segments(20, 4, seed=4)
    opcheck(torch.ops.sparse3d.segment_reduce.default, (values.cuda().requires_grad_(True), offsets.cuda(), reduce))
