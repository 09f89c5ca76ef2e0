"""centerpoint trained by 2 gloo processes (torchrun, one sample each) matches 1 process
with the combined batch of 2: the same gradient at the first step, the same logged losses,
the same final parameters, up to float rounding.

What makes it so: the batch norms synchronise their statistics across processes
(:mod:`sparse3d.nn.norm`) and the CenterHead normalises its losses by the counts of the
whole batch (:meth:`sparse3d.detection.heads.center_head.CenterHead.loss`).

Run by pytest, the test launches this same file under torchrun (``python -m
torch.distributed.run --standalone --nproc_per_node=2``); rank 0 saves what it recorded to
the folder given as argument.
"""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_detectors import tiny_config

from sparse3d.engine.distributed import World, close_world, init_world
from sparse3d.engine.method import TrainingCallback
from sparse3d.engine.trainer import Trainer

STEPS = 5


def train(data: Path, out: Path, world: World, dtype: torch.dtype, steps: int) -> dict:
    """Trains the tiny centerpoint (global batch 2) in ``dtype`` as this process's part of
    ``world``.

    Returns:
        ``grads``: name -> gradient of the first step, averaged over processes (before
        clipping); ``initial``: the parameters before the first step; ``final``: the state
        dict after the last; ``losses``: the logged loss entries without their timing.
    """
    config = tiny_config("centerpoint", data, out, steps)
    config.trainer.log_every = 1
    trainer = Trainer(config, "centerpoint", out, world)
    method = trainer.method
    # The network and the points in ``dtype`` (the data pipeline makes float32 points).
    model, batch_of, recorded = method.model.to(dtype), method.get_train_batch, {}
    method.get_train_batch = lambda step: dataclasses.replace(batch_of(step), points=batch_of(step).points.to(dtype))
    method.get_eval_metrics = lambda step: {}  # not compared (and its batches are float32)

    def record(step, optimizers, produced):
        if step == 0:
            recorded["grads"] = {name: p.grad.clone() for name, p in model.named_parameters()}
            recorded["initial"] = {name: p.detach().clone() for name, p in model.named_parameters()}

    trainer.callbacks.insert(0, TrainingCallback("after_backward", record))  # before the clipping
    trainer.train()
    recorded["final"] = model.state_dict()
    recorded["losses"] = [{k: v for k, v in entry.items() if k != "time"} for entry in trainer.history["train"]]
    return recorded


RUNS = {"float64": (torch.float64, STEPS), "float32": (torch.float32, 1)}
"""The runs compared: a few steps in float64, the first step in float32 (the dtype of real
training; see the test for why not more)."""


def _worker(data: Path, out: Path) -> None:
    """One torchrun process: both runs of :data:`RUNS`; rank 0 saves OUT/recorded.pt."""
    world = init_world(torch.device("cpu"))
    try:
        recorded = {name: train(data, out / name, world, dtype, steps) for name, (dtype, steps) in RUNS.items()}
        if world.is_main:
            torch.save(recorded, out / "recorded.pt")
    finally:
        close_world(world)


def _assert_same_gradients(one: dict, two: dict, rtol: float) -> None:
    """Every parameter's gradient to ``rtol`` of its largest magnitude, or of 1% of the
    network's largest gradient if that is more: the biases ahead of a batch norm have an
    exact gradient of 0 (the norm removes them), so theirs are pure rounding noise."""
    largest = max(g.abs().max() for g in one.values())
    for name, grad in one.items():
        atol = rtol * max(grad.abs().max(), largest * 1e-2)
        torch.testing.assert_close(two[name], grad, rtol=0, atol=atol, msg=name)


def test_two_processes_train_like_one_with_the_combined_batch(lidar_world, tmp_path):
    one = {name: train(lidar_world, tmp_path / name, World(), dtype, steps) for name, (dtype, steps) in RUNS.items()}
    tests = str(Path(__file__).parents[1])  # where tiny_detectors is
    path = os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          __file__, str(lidar_world), str(tmp_path / "two")], check=False, capture_output=True, text=True,
                         timeout=600, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    two = torch.load(tmp_path / "two" / "recorded.pt", weights_only=True)
    # Not bitwise: the batch statistics, the batch-norm gradient sums and the parameter
    # gradients are summed in another order (per process, then across processes), so the
    # two runs differ by rounding, amplified where sums cancel (measured: 9e-14 of each
    # parameter's largest gradient in float64; in float32 up to 1.6e-2 on batch-norm biases
    # deep in the encoder and 3.6e-3 on the first conv's weights, whose gradients are sums
    # over every voxel that cancel). The float64 comparison is the proof of equivalence; the
    # float32 one checks the dtype of real training is not off by more than its rounding.
    _assert_same_gradients(one["float64"]["grads"], two["float64"]["grads"], rtol=1e-12)
    _assert_same_gradients(one["float32"]["grads"], two["float32"]["grads"], rtol=5e-2)
    # Parameters after a few steps are compared in float64 only: Adam divides each gradient
    # element by its own magnitude, so an element whose gradient is near its float32 rounding
    # noise moves by up to the learning rate either way (measured after 5 float32 steps: up
    # to 8e-4 on weights, 7e-3 on the biases ahead of a batch norm), where float64 rounding
    # stays far below Adam's epsilon (measured: 2e-10).
    final_one, final_two = one["float64"]["final"], two["float64"]["final"]
    for name, value in final_one.items():
        torch.testing.assert_close(final_two[name], value, rtol=0, atol=1e-8, msg=name)
    # ... and not trivially: training moved the parameters far beyond that tolerance.
    initial = one["float64"]["initial"]
    assert max((final_one[name] - initial[name]).abs().max() for name in initial) > 1e-3
    # The trainer logs float32 averages of the processes' losses: the float64 run's agree to
    # a few float32 ulps (measured: 1.2e-7), the float32 run's to its rounding (9e-7).
    for run_name, rel in (("float64", 1e-6), ("float32", 1e-5)):
        for a, b in zip(one[run_name]["losses"], two[run_name]["losses"], strict=True):
            assert a.keys() == b.keys() and a["step"] == b["step"]
            for key in a.keys() - {"step"}:
                assert b[key] == pytest.approx(a[key], rel=rel, abs=1e-6), (run_name, a["step"], key)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), Path(sys.argv[2]))
