"""Ctrl-C (SIGINT) or SIGTERM during sparse3d-train: the step finishes, a checkpoint is
written, the resume command is printed, exit 130, no traceback; resuming is exact."""

import re
import signal
import subprocess
import time

import pytest
import torch
from clirun import VENV_BIN, metrics_without_timing, run_cli

from sparse3d.engine.checkpoint import list_checkpoints, load_checkpoint

ARGS = ["method=fitcheck", "trainer.max_steps=200", "trainer.ckpt_every=50", "trainer.progress=false",
        "model.step_sleep=0.01"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_checkpoints_then_rerun_matches_uninterrupted_run(plugin_env, tmp_path, sig):
    reference = tmp_path / "reference"
    assert run_cli("sparse3d-train", *ARGS, f"output={reference}", env=plugin_env).returncode == 0

    run = tmp_path / "interrupted"
    args = [*ARGS, f"output={run}"]
    process = subprocess.Popen(
        [str(VENV_BIN / "sparse3d-train"), *args], env=plugin_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list_checkpoints(run):  # a step has run (the first checkpoint is after step 50)
        assert process.poll() is None and time.monotonic() < deadline, "run ended before it could be interrupted"
        time.sleep(0.005)
    time.sleep(0.055)  # land between checkpoints, so the interruption writes its own
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=120)

    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    stopped = re.search(r"stopped after step (\d+); checkpoint (\S+)", stdout)
    assert stopped, stdout
    step, path = int(stopped.group(1)), stopped.group(2)
    assert 50 <= step < 200
    assert list_checkpoints(run)[-1] == (step, run / "ckpt" / f"step-{step:06d}.pt")
    assert path == str(run / "ckpt" / f"step-{step:06d}.pt")
    assert f"resume with: sparse3d-train {' '.join(args)}" in stdout

    resumed = run_cli("sparse3d-train", *args, env=plugin_env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"(step {step})" in resumed.stdout

    final_ref = load_checkpoint(reference / "ckpt" / "step-000200.pt")
    final_resumed = load_checkpoint(run / "ckpt" / "step-000200.pt")
    for group in ("method", "optimizers"):
        assert repr(final_ref[group].keys()) == repr(final_resumed[group].keys())
    for name, value in final_ref["method"].items():
        assert torch.equal(value, final_resumed["method"][name]), name
    state_ref, state_resumed = final_ref["optimizers"]["mlp"]["state"], final_resumed["optimizers"]["mlp"]["state"]
    for index, entry in state_ref.items():
        for key, value in entry.items():
            assert torch.equal(value, state_resumed[index][key]), (index, key)
    assert metrics_without_timing(reference) == metrics_without_timing(run)
