"""Kernel maps, output sites and transposed maps: native kernels against the torch
references on random voxel sets (on each device), plus hand-checked and edge cases."""

import pytest
import torch
from devices import DEVICES
from sparse_cases import random_coords

import sparse3d
from sparse3d.core.coords import conv_output_shape
from sparse3d.core.kernel_map import (
    conv_map,
    conv_map_ref,
    invert_kernel_map,
    invert_kernel_map_ref,
    kernel_map,
    kernel_map_ref,
)

# (kernel, stride, padding, dilation): submanifold-like, strided, anisotropic, dilated.
GEOMETRIES = [
    ((3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1)),
    ((3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1)),
    ((3, 1, 1), (2, 1, 1), (0, 0, 0), (1, 1, 1)),
    ((2, 3, 2), (2, 1, 3), (0, 1, 1), (1, 2, 1)),
    ((3, 3, 3), (1, 1, 1), (2, 2, 2), (2, 2, 2)),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("geom", GEOMETRIES)
@pytest.mark.parametrize("seed", [0, 1])
def test_conv_map_and_kernel_map_match_reference(geom, seed, device):
    kernel, stride, padding, dilation = geom
    shape = (9, 10, 11)
    coords = random_coords(seed, shape, batch_size=2, density=0.15).to(device)
    out_shape = conv_output_shape(shape, kernel, stride, padding, dilation)
    out, nbr = conv_map(coords, shape, out_shape, kernel, stride, padding, dilation)
    ref, nbr_ref = conv_map_ref(coords, list(shape), list(out_shape), kernel, stride, padding, dilation)
    assert torch.equal(out, ref) and torch.equal(nbr, nbr_ref)
    # The same map from the lookup kernel, and (same sites) from the submanifold path.
    assert torch.equal(kernel_map(coords, out, shape, out_shape, kernel, stride, padding, dilation), nbr_ref)
    if stride == (1, 1, 1) and all(p == k // 2 * d for k, p, d in zip(kernel, padding, dilation)):
        subm = kernel_map(coords, coords, shape, shape, kernel, stride, padding, dilation)
        assert torch.equal(subm, kernel_map_ref(coords, coords.clone(), list(shape), list(shape), kernel, stride, padding, dilation))
    # Regular conv: every output site is reached by at least one input.
    assert bool((nbr >= 0).any(1).all())
    inv = invert_kernel_map(nbr, coords.shape[0])
    assert torch.equal(inv, invert_kernel_map_ref(nbr, coords.shape[0]))


@pytest.mark.parametrize("row_order", ["sorted", "reversed_axes", "shuffled"])
@pytest.mark.parametrize("geom", [GEOMETRIES[0], GEOMETRIES[4], ((3, 1, 5), (1, 1, 1), (1, 0, 2), (1, 1, 1))])
def test_submanifold_map_any_row_order(row_order, geom):
    # The native path merges in place when rows are sorted by (b, c0, c1, c2) or by
    # (b, c2, c1, c0), and radix-sorts other orders: all must give the reference map.
    kernel, stride, padding, dilation = geom
    shape = (7, 12, 9)
    coords = random_coords(5, shape, batch_size=2, density=0.2).long()  # shuffled
    if row_order == "sorted":
        coords = coords[(((coords[:, 0] * shape[0] + coords[:, 1]) * shape[1] + coords[:, 2]) * shape[2] + coords[:, 3]).argsort()]
    elif row_order == "reversed_axes":
        coords = coords[(((coords[:, 0] * shape[2] + coords[:, 3]) * shape[1] + coords[:, 2]) * shape[0] + coords[:, 1]).argsort()]
    coords = coords.int().contiguous()
    nbr = kernel_map(coords, coords, shape, shape, kernel, stride, padding, dilation)
    ref = kernel_map_ref(coords, coords.clone(), list(shape), list(shape), kernel, stride, padding, dilation)
    assert torch.equal(nbr, ref)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("geom", [((3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1)), ((2, 3, 1), (2, 1, 3), (0, 1, 0), (1, 2, 1))])
def test_transposed_conv_map_matches_reference(geom, device):
    kernel, stride, padding, dilation = geom
    shape = (5, 6, 7)
    coords = random_coords(4, shape, batch_size=2, density=0.2)
    out_shape = [(s - 1) * st - 2 * p + d * (k - 1) + 1 for s, k, st, p, d in zip(shape, kernel, stride, padding, dilation)]
    out, nbr = conv_map(coords.to(device), shape, out_shape, kernel, stride, padding, dilation, transposed=True)
    ref, nbr_ref = conv_map_ref(coords.to(device), list(shape), out_shape, list(kernel), list(stride), list(padding),
                                list(dilation), True)
    assert torch.equal(out, ref) and torch.equal(nbr, nbr_ref)
    out, nbr = out.cpu(), nbr.cpu()
    # Every entry is the generating rule: out = in * stride - padding + k * dilation.
    o, k = (nbr >= 0).nonzero(as_tuple=True)
    taps = torch.stack(torch.meshgrid(*[torch.arange(n) for n in kernel], indexing="ij"), -1).reshape(-1, 3)
    src = coords[nbr[o, k].long()]
    assert torch.equal(src[:, 0], out[o, 0])
    expected = src[:, 1:] * torch.tensor(stride) - torch.tensor(padding) + taps[k] * torch.tensor(dilation)
    assert torch.equal(expected.int(), out[o, 1:])


def test_kernel_map_hand_case():
    # Two voxels one cell apart along c2; a 1x1x3 kernel (taps c2-1, c2, c2+1).
    coords = torch.tensor([[0, 2, 2, 2], [0, 2, 2, 3]], dtype=torch.int32)
    nbr = kernel_map(coords, coords, (5, 5, 5), (5, 5, 5), (1, 1, 3), (1, 1, 1), (0, 0, 1), (1, 1, 1))
    assert nbr.tolist() == [[-1, 0, 1], [0, 1, -1]]


def test_subm_map_is_its_own_mirror():
    shape = (8, 8, 8)
    coords = random_coords(3, shape, 1, 0.3)
    nbr = kernel_map(coords, coords, shape, shape, (3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1))
    assert torch.equal(invert_kernel_map(nbr, coords.shape[0]), nbr.flip(1))
    assert torch.equal(nbr[:, 13], torch.arange(coords.shape[0], dtype=torch.int32))


def test_keys_beyond_int32_volume():
    # 3 * 2000 * 2000 * 1000 cells > 2^31: keys must be int64 all the way.
    shape = (2000, 2000, 1000)
    coords = torch.tensor(
        [[2, 1999, 1999, 998], [2, 1999, 1999, 999], [0, 0, 0, 0], [1, 1000, 5, 7]], dtype=torch.int32
    )
    nbr = kernel_map(coords, coords, shape, shape, (3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1))
    assert torch.equal(nbr, kernel_map_ref(coords, coords, list(shape), list(shape), (3,) * 3, (1,) * 3, (1,) * 3, (1,) * 3))
    assert nbr[0, 14] == 1 and nbr[1, 12] == 0
    out_shape = conv_output_shape(shape, (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1))
    out = conv_map(coords, shape, out_shape, (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1))
    ref = conv_map_ref(coords, list(shape), list(out_shape), (3,) * 3, (2,) * 3, (1,) * 3, (1,) * 3)
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])


def test_empty_inputs_give_empty_maps():
    empty = torch.zeros(0, 4, dtype=torch.int32)
    one = torch.tensor([[0, 1, 1, 1]], dtype=torch.int32)
    geom = ((3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1))
    assert conv_map(empty, (4, 4, 4), (4, 4, 4), *geom)[0].shape == (0, 4)
    assert kernel_map(empty, empty, (4, 4, 4), (4, 4, 4), *geom).shape == (0, 27)
    assert kernel_map(empty, one, (4, 4, 4), (4, 4, 4), *geom).eq(-1).all()
    # Stride 2, kernel 1, no padding: odd sites reach no output.
    odd = torch.tensor([[0, 1, 1, 1]], dtype=torch.int32)
    out, nbr = conv_map(odd, (4, 4, 4), (2, 2, 2), (1, 1, 1), (2, 2, 2), (0, 0, 0), (1, 1, 1))
    assert out.shape == (0, 4) and nbr.shape == (0, 1)


@pytest.mark.skipif(not sparse3d.HAS_NATIVE, reason="native kernel checks")
def test_native_ops_reject_bad_arguments():
    coords = torch.zeros(3, 4, dtype=torch.int32)
    with pytest.raises(RuntimeError, match="in_coords must be int32"):
        torch.ops.sparse3d.kernel_map(coords.long(), coords, [4] * 3, [4] * 3, [3] * 3, [1] * 3, [1] * 3, [1] * 3)
    with pytest.raises(RuntimeError, match="kernel must have 3 entries"):
        torch.ops.sparse3d.kernel_map(coords, coords, [4] * 3, [4] * 3, [3] * 2, [1] * 3, [1] * 3, [1] * 3)
    with pytest.raises(RuntimeError, match="stride must be >= 1"):
        torch.ops.sparse3d.conv_map(coords, [4] * 3, [4] * 3, [3] * 3, [0] * 3, [1] * 3, [1] * 3)
    dup = torch.tensor([[0, 1, 1, 1], [0, 2, 2, 2], [0, 1, 1, 1]], dtype=torch.int32)
    with pytest.raises(RuntimeError, match=r"duplicate input site \(0, 1, 1, 1\)"):
        torch.ops.sparse3d.kernel_map(dup, dup, [4] * 3, [4] * 3, [3] * 3, [1] * 3, [1] * 3, [1] * 3)
    with pytest.raises(RuntimeError, match=r"duplicate input site \(0, 1, 1, 1\)"):
        torch.ops.sparse3d.conv_map(dup, [4] * 3, [2] * 3, [3] * 3, [2] * 3, [1] * 3, [1] * 3)
    negative = torch.tensor([[0, 1, 1, 1], [-1, 2, 2, 2]], dtype=torch.int32)
    with pytest.raises(RuntimeError, match="negative batch index"):
        torch.ops.sparse3d.conv_map(negative, [4] * 3, [2] * 3, [3] * 3, [2] * 3, [1] * 3, [1] * 3)
    with pytest.raises(RuntimeError, match="refers to row 7"):
        torch.ops.sparse3d.invert_kernel_map(torch.tensor([[7]], dtype=torch.int32), 3)


@pytest.mark.skipif(not sparse3d.HAS_NATIVE, reason="native kernel checks")
def test_kernel_map_opcheck():
    coords = random_coords(5, (6, 6, 6), 1, 0.3)
    args = ([6] * 3, [6] * 3, [3] * 3, [1] * 3, [1] * 3, [1] * 3)
    torch.library.opcheck(torch.ops.sparse3d.kernel_map.default, (coords, coords, *args))
    nbr = torch.ops.sparse3d.kernel_map(coords, coords, *args)
    torch.library.opcheck(torch.ops.sparse3d.invert_kernel_map.default, (nbr, coords.shape[0]))


def test_maps_are_identical_across_thread_counts():
    shape = (40, 200, 200)
    coords = random_coords(7, shape, 2, 0.01)  # ~32k sites, many parallel chunks
    subm = ((3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1))
    strided = ((3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1))
    out_shape = conv_output_shape(shape, *strided)
    previous = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 2):
            torch.set_num_threads(threads)
            runs.append([kernel_map(coords, coords, shape, shape, *subm), *conv_map(coords, shape, out_shape, *strided)])
    finally:
        torch.set_num_threads(previous)
    for run in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], run))
