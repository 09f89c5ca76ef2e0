"""DSVT window / set partition: native op vs torch reference vs a plain-Python spec."""

import math

import pytest
import torch
from torch.library import opcheck

from sparse3d import HAS_NATIVE
from sparse3d.core.partition import set_partition, set_partition_ref

needs_native = pytest.mark.skipif(not HAS_NATIVE, reason="sparse3d._C is not built")


def random_coords(seed: int, n: int, shape, batch_size: int = 2) -> torch.Tensor:
    """int32 [<=n, 4] unique random voxels in a random (not sorted) order."""
    g = torch.Generator().manual_seed(seed)
    cells = batch_size * shape[0] * shape[1] * shape[2]
    keys = torch.randperm(cells, generator=g)[: min(n, cells)]
    z = keys % shape[2]
    y = keys // shape[2] % shape[1]
    x = keys // (shape[2] * shape[1]) % shape[0]
    b = keys // (shape[2] * shape[1] * shape[0])
    return torch.stack([b, x, y, z], 1).int()


def spec_partition(coords, shape, window, shift, set_size):
    """The partition written from the definition, window by window, in plain Python."""
    n_win = [math.ceil(s / w) + 1 for s, w in zip(shape, window)]
    windows: dict[int, list] = {}
    for row, (b, *xyz) in enumerate(coords.tolist()):
        shifted = [c + s for c, s in zip(xyz, shift)]
        w = [s // size for s, size in zip(shifted, window)]
        local = [s % size for s, size in zip(shifted, window)]
        win_id = ((b * n_win[0] + w[0]) * n_win[1] + w[1]) * n_win[2] + w[2]
        windows.setdefault(win_id, []).append((local, row))
    sets = [[], []]
    for win_id in sorted(windows):
        members = windows[win_id]
        orders = [
            [r for (l, r) in sorted(members, key=lambda m: (m[0][1], m[0][0], m[0][2]))],  # y-major
            [r for (l, r) in sorted(members, key=lambda m: (m[0][0], m[0][1], m[0][2]))],  # x-major
        ]
        n = len(members)
        n_sets = -(-n // set_size)
        for o in range(2):
            for j in range(n_sets):
                sets[o].append([orders[o][(j * set_size + t) * n // (n_sets * set_size)] for t in range(set_size)])
    return torch.tensor(sets, dtype=torch.int64).view(2, -1, set_size)


CASES = [
    # shape, window, shift, set_size, n
    ((12, 10, 1), (4, 4, 1), (0, 0, 0), 5, 70),
    ((12, 10, 1), (4, 4, 1), (2, 2, 0), 5, 70),
    ((9, 7, 6), (3, 3, 4), (1, 2, 2), 4, 150),
    ((16, 16, 1), (8, 8, 1), (4, 4, 0), 90, 200),
    ((5, 5, 3), (5, 5, 3), (0, 0, 0), 7, 60),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("impl", ["op", "ref"])
def test_partition_matches_spec_and_covers_every_voxel(case, impl):
    shape, window, shift, set_size, n = case
    coords = random_coords(len(shape) * n + set_size, n, shape)
    if impl == "op":
        part = set_partition(coords, shape, window, shift, set_size)
        inds, mask, first, in_win = part.set_inds, part.key_mask, part.first_slot, part.coords_in_window
    else:
        inds, mask, first, in_win = set_partition_ref(coords, shape, window, shift, set_size)
    torch.testing.assert_close(inds, spec_partition(coords, shape, window, shift, set_size), rtol=0, atol=0)
    n_vox = coords.shape[0]
    for row in range(2):
        flat = inds[row].reshape(-1)
        # every voxel used, and each voxel's first slot is its smallest flat position
        assert torch.equal(torch.unique(flat), torch.arange(n_vox))
        smallest = torch.full((n_vox,), flat.numel()).scatter_reduce(0, flat, torch.arange(flat.numel()), "amin")
        assert torch.equal(first[row], smallest)
        assert torch.equal(flat[first[row]], torch.arange(n_vox))
        # masked = repeats the previous slot of its own set; the first slot never is
        repeats = torch.zeros_like(mask[row])
        repeats[:, 1:] = inds[row][:, 1:] == inds[row][:, :-1]
        assert torch.equal(mask[row], repeats)
        # every set has at least one key, and a window's slack stays below one set
        assert bool((~mask[row]).any(1).all())
    expected_in_win = (coords[:, 1:] + torch.tensor(shift, dtype=torch.int32)) % torch.tensor(window, dtype=torch.int32)
    assert torch.equal(in_win, expected_in_win)


@needs_native
@pytest.mark.parametrize("seed", range(4))
def test_native_matches_ref_random(seed):
    g = torch.Generator().manual_seed(seed)
    shape = tuple(int(v) for v in torch.randint(1, 20, (3,), generator=g))
    window = tuple(int(v) for v in (torch.rand(3, generator=g) * torch.tensor(shape)).long().clamp(min=1))
    shift = tuple(int(torch.randint(0, w, (1,), generator=g)) for w in window)
    set_size = int(torch.randint(1, 40, (1,), generator=g))
    coords = random_coords(seed, int(torch.randint(0, 400, (1,), generator=g)), shape, batch_size=3)
    part = set_partition(coords, shape, window, shift, set_size)
    ref = set_partition_ref(coords, shape, window, shift, set_size)
    for got, want in zip((part.set_inds, part.key_mask, part.first_slot, part.coords_in_window), ref):
        assert torch.equal(got, want)


@needs_native
def test_partition_independent_of_thread_count():
    coords = random_coords(7, 20000, (120, 120, 4), batch_size=2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = set_partition(coords, (120, 120, 4), (12, 12, 4), (6, 6, 0), 36)
        torch.set_num_threads(max(2, threads))
        many = set_partition(coords, (120, 120, 4), (12, 12, 4), (6, 6, 0), 36)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one.set_inds, many.set_inds) and torch.equal(one.first_slot, many.first_slot)


@needs_native
def test_partition_opcheck():
    coords = random_coords(3, 50, (8, 8, 2))
    opcheck(torch.ops.sparse3d.set_partition.default, (coords, [8, 8, 2], [4, 4, 2], [2, 2, 0], 6))


def test_partition_empty_input():
    part = set_partition(torch.zeros(0, 4, dtype=torch.int32), (8, 8, 1), (4, 4, 1), (0, 0, 0), 5)
    assert part.set_inds.shape == (2, 0, 5) and part.first_slot.shape == (2, 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"coords": torch.zeros(3, 4)}, "int32"),
        ({"coords": torch.tensor([[0, 8, 0, 0]], dtype=torch.int32)}, r"column 1 must lie in \[0, 8\)"),
        ({"coords": torch.tensor([[-1, 0, 0, 0]], dtype=torch.int32)}, "column 0"),
        ({"shift": (4, 0, 0)}, "0 <= shift < window"),
        ({"set_size": 0}, "set_size"),
    ],
)
def test_partition_bad_input(kwargs, match):
    args = {"coords": torch.zeros(1, 4, dtype=torch.int32), "sparse_shape": (8, 8, 1), "window": (4, 4, 1),
            "shift": (0, 0, 0), "set_size": 5}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        set_partition(**args)


@pytest.mark.cuda
def test_partition_cuda_matches_cpu():
    coords = random_coords(11, 5000, (60, 50, 8), batch_size=2)
    cpu = set_partition(coords, (60, 50, 8), (12, 12, 4), (6, 6, 2), 36)
    gpu = set_partition(coords.cuda(), (60, 50, 8), (12, 12, 4), (6, 6, 2), 36)
    for a, b in zip((cpu.set_inds, cpu.key_mask, cpu.first_slot, cpu.coords_in_window),
                    (gpu.set_inds, gpu.key_mask, gpu.first_slot, gpu.coords_in_window)):
        assert torch.equal(a, b.cpu())
