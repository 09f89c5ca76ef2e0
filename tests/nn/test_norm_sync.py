"""Synchronised batch norm: two gloo processes, each holding a share of the rows, compute
what one process computes on all the rows (outputs, input and parameter gradients, running
statistics), bitwise alike at 1 and 2 threads.

Run by pytest, the test launches this same file under torchrun (``python -m
torch.distributed.run``, as ``torchrun --standalone --nproc_per_node=2``); each worker saves
its results to the folder given as argument, and the test compares them with one process.
"""

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from sparse3d.nn.norm import BatchNorm2d, SparseBatchNorm1d

STEPS = 2
"""Training steps per case: the second folds its statistics into running ones that are
not the initial values."""


@dataclass(frozen=True)
class Case:
    """A batch norm and the data of each step, split among the processes."""

    name: str
    dense: bool
    """BatchNorm2d over [B, C, H, W] split by samples, else SparseBatchNorm1d over rows
    [N, C] split by rows (with a residual and ReLU)."""
    shares: tuple[int, int]
    """Samples (dense) or rows (sparse) of rank 0 and rank 1."""
    dtype: torch.dtype
    channels: int = 6


CASES = (
    Case("sparse_f64", False, (1700, 1300), torch.float64),
    Case("sparse_f32", False, (5000, 3000), torch.float32),  # over one chunk of the stats kernel
    Case("dense_f64", True, (2, 1), torch.float64),
    Case("dense_f32", True, (1, 2), torch.float32),
    Case("one_row_on_rank_1", False, (6, 1), torch.float64),
    Case("no_row_on_rank_1", False, (7, 0), torch.float64),
)


def _module(case: Case) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(11)
    bn = (BatchNorm2d if case.dense else SparseBatchNorm1d)(case.channels, eps=1e-3, momentum=0.1).to(case.dtype)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5, generator=gen)
        bn.bias.normal_(generator=gen)
    return bn


def _step_data(case: Case, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The whole batch of a step: input, residual (sparse only) and output gradient. The two
    shares have different means and scales, so that their own statistics are far from the
    batch's."""
    gen = torch.Generator().manual_seed(100 * step + len(case.name))
    first, second = case.shares
    shape = (lambda n: (n, case.channels, 9, 7)) if case.dense else (lambda n: (n, case.channels))
    x = torch.cat([torch.randn(shape(first), generator=gen, dtype=case.dtype) * 2 + 0.5,
                   torch.randn(shape(second), generator=gen, dtype=case.dtype) * 0.5 - 1.0])
    return x, torch.randn(x.shape, generator=gen, dtype=case.dtype), torch.randn(x.shape, generator=gen, dtype=case.dtype)


def run_case(case: Case, rank: int, world_size: int) -> dict[str, list[torch.Tensor]]:
    """Trains the case's batch norm for :data:`STEPS` steps on this process's share (the
    whole batch when ``world_size`` is 1).

    Returns:
        per step ``out``, ``v_x``, ``v_residual`` (sparse), ``v_weight``, ``v_bias``; and the
        final ``running`` (mean, var, num_batches_tracked).
    """
    bn = _module(case)
    lo = 0 if world_size == 1 or rank == 0 else case.shares[0]
    hi = sum(case.shares) if world_size == 1 or rank == 1 else case.shares[0]
    results: dict[str, list[torch.Tensor]] = {k: [] for k in ("out", "v_x", "v_residual", "v_weight", "v_bias")}
    for step in range(STEPS):
        x, residual, v = (t[lo:hi] for t in _step_data(case, step))
        x, residual = x.requires_grad_(), residual.requires_grad_()
        out = bn(x) if case.dense else bn.normalize(x, residual=residual, relu=True)
        bn.weight.grad = bn.bias.grad = None
        out.backward(v)
        for key, value in (("out", out.detach()), ("v_x", x.grad), ("v_weight", bn.weight.grad), ("v_bias", bn.bias.grad)):
            results[key].append(value)
        if not case.dense:
            results["v_residual"].append(residual.grad)
    results["running"] = [bn.running_mean, bn.running_var, bn.num_batches_tracked]
    return results


def _worker(out_dir: Path) -> None:
    """One torchrun process: every case at 1 and 2 threads, and a batch too small over all
    processes; saved to OUT/rank<r>.pt."""
    dist.init_process_group("gloo")
    rank, size = dist.get_rank(), dist.get_world_size()
    saved = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        saved[threads] = {case.name: run_case(case, rank, size) for case in CASES}
    try:
        SparseBatchNorm1d(3)(torch.randn(1 - rank, 3))  # one row in all
    except ValueError as err:
        saved["error"] = str(err)
    torch.save(saved, out_dir / f"rank{rank}.pt")
    dist.destroy_process_group()


# float64 agrees to rounding; float32 to a few ulps: the two processes' statistics are
# rounded to the input dtype before they are merged (one process rounds the merged ones
# once), and the gradient sums likewise.
TOLERANCE = {torch.float64: {"rtol": 1e-12, "atol": 1e-12}, torch.float32: {"rtol": 1e-5, "atol": 1e-5}}


def test_two_processes_compute_the_batch_norm_of_all_rows(tmp_path):
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          __file__, str(tmp_path)], check=False, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for rank in ranks:  # the same bits at 1 and 2 threads
        for name, results in rank[1].items():
            for key, values in results.items():
                for a, b in zip(values, rank[2][name][key], strict=True):
                    assert torch.equal(a, b), (name, key)
        assert "at least 2 rows over all processes, got 1" in rank["error"]
    for case in CASES:
        one = run_case(case, 0, 1)
        two = [rank[1][case.name] for rank in ranks]
        tol = TOLERANCE[case.dtype]
        for key in ("out", "v_x", "v_residual"):
            for step, expected in enumerate(one[key]):
                torch.testing.assert_close(torch.cat([two[0][key][step], two[1][key][step]]), expected, **tol, msg=f"{case.name} {key}")
        for key in ("v_weight", "v_bias"):  # each process's rows: their sum is the whole batch's
            for step, expected in enumerate(one[key]):
                torch.testing.assert_close(two[0][key][step] + two[1][key][step], expected, **tol, msg=f"{case.name} {key}")
        for a, b, expected in zip(two[0]["running"], two[1]["running"], one["running"]):
            assert torch.equal(a, b), case.name  # every process holds the same running statistics
            torch.testing.assert_close(a, expected, **tol, msg=f"{case.name} running")
    # ... and not trivially: rank 0's rows alone give a batch norm far from the whole batch's.
    case = CASES[0]
    x, residual, _ = (t[: case.shares[0]] for t in _step_data(case, 0))
    alone = _module(case).normalize(x, residual=residual, relu=True)
    assert (alone - run_case(case, 0, 1)["out"][0][: case.shares[0]]).abs().max() > 0.1


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
