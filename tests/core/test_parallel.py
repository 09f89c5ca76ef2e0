"""The native kernels' thread pool (cuda/cpu/parallel.h): results at any thread count, in
a forked child (a DataLoader worker), and while another process holds the cores."""

import multiprocessing as mp
import subprocess
import sys

import pytest
import torch
from sparse_cases import random_coords

import sparse3d
from sparse3d.core.kernel_map import kernel_map

pytestmark = pytest.mark.skipif(not sparse3d.HAS_NATIVE, reason="the pool is part of the native extension")

SHAPE = (40, 40, 40)
GEOM = ((3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1))


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def submanifold_map(coords: torch.Tensor) -> torch.Tensor:
    return kernel_map(coords, coords, SHAPE, SHAPE, *GEOM)


def _child(coords: torch.Tensor, queue) -> None:
    torch.set_num_threads(2)
    queue.put(submanifold_map(coords).numpy())  # by value: the child exits right after


def test_a_forked_child_builds_its_own_pool():
    coords = random_coords(0, SHAPE, 1, 0.3)  # ~19k sites: many pieces
    torch.set_num_threads(2)
    expected = submanifold_map(coords)  # the parent's pool threads exist now
    context = mp.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child, args=(coords, queue))
    child.start()
    got = queue.get(timeout=120)  # a child waiting on its parent's threads would hang here
    child.join(timeout=60)
    assert child.exitcode == 0
    assert torch.equal(torch.from_numpy(got), expected)


def test_same_map_at_every_thread_count_beside_a_busy_process():
    coords = random_coords(1, SHAPE, 2, 0.2)
    torch.set_num_threads(1)
    expected = submanifold_map(coords)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        for threads in (2, 3, 2, 1):
            torch.set_num_threads(threads)
            for _ in range(5):
                assert torch.equal(submanifold_map(coords), expected)
    finally:
        busy.kill()
        busy.wait()
