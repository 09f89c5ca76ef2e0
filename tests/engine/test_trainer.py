"""The trainer end to end on the test-only fitcheck method: learning, checkpoints, resumption."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from clirun import VENV_BIN, metrics_without_timing, run_cli

from sparse3d.engine.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
)
from sparse3d.engine.distributed import World
from sparse3d.engine.method import StepOutputs, TrainingCallback
from sparse3d.engine.registry import discover_methods
from sparse3d.engine.trainer import RunDirError, Trainer, TrainingInterrupted


def fitcheck_config(plugin_path, tmp_path, **trainer):
    spec = discover_methods()["fitcheck"]
    config = spec.default_config()
    config.output = tmp_path / "run"
    config.trainer.progress = False
    for key, value in trainer.items():
        setattr(config.trainer, key, value)
    return config


def test_loss_falls_and_run_dir_is_complete(plugin_path, tmp_path):
    config = fitcheck_config(plugin_path, tmp_path, max_steps=120, eval_every=40, ckpt_every=40)
    final = Trainer(config, "fitcheck", config.output, World()).train()
    metrics = json.loads((config.output / "metrics.json").read_text())
    evals = [m["eval_mse"] for m in metrics["eval"]]
    assert [m["step"] for m in metrics["eval"]] == [40, 80, 120]
    assert evals[-1] < 0.5 * evals[0]  # the MLP really fits its target
    assert metrics["train"][-1]["mse"] < metrics["train"][0]["mse"]
    assert final["eval_mse"] == evals[-1]
    assert [s for s, _ in list_checkpoints(config.output)] == [80, 120]  # keep_ckpts=2
    assert (config.output / "config.yaml").exists() and (config.output / "mlp.pt").exists()


def test_same_seed_same_result_different_seed_differs(plugin_path, tmp_path):
    finals = []
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        config = fitcheck_config(plugin_path, tmp_path / name, max_steps=20, seed=seed)
        finals.append(Trainer(config, "fitcheck", config.output, World()).train()["eval_mse"])
    assert finals[0] == finals[1] and finals[0] != finals[2]


def test_callbacks_receive_what_the_step_produced(plugin_path, tmp_path):
    from sparse3d_fitcheck import target_function

    config = fitcheck_config(plugin_path, tmp_path, max_steps=3, log_every=1)
    trainer = Trainer(config, "fitcheck", config.output, World())
    calls = []

    def record(step, optimizers, produced):
        calls.append((step, set(optimizers), produced))

    trainer.callbacks += [TrainingCallback(where, record) for where in ("before_step", "after_backward", "after_step")]
    trainer.train()
    assert [(step, names) for step, names, _ in calls] == [(s, {"mlp"}) for s in (0, 0, 0, 1, 1, 1, 2, 2, 2)]
    assert all(produced is None for _, _, produced in calls[0::3])  # before the forward pass
    assert all(a[2] is b[2] for a, b in zip(calls[1::3], calls[2::3]))  # after backward: the same step's outputs
    for (step, _, produced), logged in zip(calls[2::3], trainer.history["train"], strict=True):
        assert isinstance(produced, StepOutputs)
        assert torch.equal(produced.batch, trainer.method.get_train_batch(step))
        assert produced.outputs.shape == (64, 1) and produced.outputs.grad_fn is not None  # the forward pass
        mse = (produced.outputs - target_function(produced.batch)).square().mean()
        assert produced.losses.keys() == {"mse"} and torch.equal(produced.losses["mse"], mse)
        assert logged["mse"] == pytest.approx(mse.item())


def test_after_backward_callbacks_see_the_gradients_before_the_step(plugin_path, tmp_path):
    config = fitcheck_config(plugin_path, tmp_path, max_steps=3)
    trainer = Trainer(config, "fitcheck", config.output, World())
    before = [p.detach().clone() for p in trainer.method.parameters()]

    def drop_gradients(step, optimizers, produced):
        for optimizer in optimizers.values():
            for group in optimizer.param_groups:
                assert all(p.grad is not None for p in group["params"])
                for p in group["params"]:
                    p.grad.zero_()

    trainer.callbacks.append(TrainingCallback("after_backward", drop_gradients))
    trainer.train()
    # Adam with zero gradients leaves the parameters where they were
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.method.parameters()))


def test_changed_config_is_refused(plugin_path, tmp_path):
    config = fitcheck_config(plugin_path, tmp_path, max_steps=5)
    Trainer(config, "fitcheck", config.output, World()).train()
    config.model.hidden = 16
    with pytest.raises(RunDirError, match="model.hidden"):
        Trainer(config, "fitcheck", config.output, World())


def test_more_steps_resume_a_finished_run(plugin_path, tmp_path):
    config = fitcheck_config(plugin_path, tmp_path, max_steps=10, ckpt_every=5)
    Trainer(config, "fitcheck", config.output, World()).train()
    run_dir, config.output = config.output, None  # the same run directory, reached without output=
    config.trainer.max_steps = 20
    trainer = Trainer(config, "fitcheck", run_dir, World())
    assert trainer.start_step == 10
    assert trainer.train()["step"] == 20


def test_corrupt_checkpoint_names_the_file(plugin_path, tmp_path):
    bad = tmp_path / "ckpt" / "step-000010.pt"
    bad.parent.mkdir()
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="step-000010.pt"):
        load_checkpoint(bad)


def test_sigkill_then_rerun_matches_uninterrupted_run(plugin_env, tmp_path):
    args = ["method=fitcheck", "trainer.max_steps=200", "trainer.ckpt_every=20", "trainer.progress=false",
            "model.step_sleep=0.01"]
    reference = tmp_path / "reference"
    assert run_cli("sparse3d-train", *args, f"output={reference}", env=plugin_env).returncode == 0

    killed = tmp_path / "killed"
    command = [str(VENV_BIN / "sparse3d-train"), *args, f"output={killed}"]
    process = subprocess.Popen(command, env=plugin_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not any(step >= 60 for step, _ in list_checkpoints(killed)):
        assert process.poll() is None and time.monotonic() < deadline, "run ended before it could be killed"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    interrupted_at = list_checkpoints(killed)[-1][0]
    assert interrupted_at < 200

    resumed = run_cli("sparse3d-train", *args, f"output={killed}", env=plugin_env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"step {interrupted_at}" in resumed.stdout

    final_ref = load_checkpoint(reference / "ckpt" / "step-000200.pt")
    final_resumed = load_checkpoint(killed / "ckpt" / "step-000200.pt")
    for name, value in final_ref["method"].items():
        assert torch.equal(value, final_resumed["method"][name]), name
    assert metrics_without_timing(reference) == metrics_without_timing(killed)


def test_config_without_checkpoint_is_taken_over(plugin_path, tmp_path):
    config = fitcheck_config(plugin_path, tmp_path, max_steps=3)
    config.output.mkdir(parents=True)
    (config.output / "config.yaml").write_text("method: fitcheck\nmodel:\n  hidden: 16\n")  # a failed start
    Trainer(config, "fitcheck", config.output, World()).train()
    assert "hidden: 32" in (config.output / "config.yaml").read_text()


def test_failed_setup_writes_nothing(plugin_path, tmp_path):
    config = fitcheck_config(plugin_path, tmp_path, max_steps=3)
    config.model.batch_size = 63
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(config, "fitcheck", config.output, World(size=2))  # the method refuses 63 over 2 processes
    assert not config.output.exists()


def test_config_stores_absolute_data_and_origin(plugin_path, tmp_path, monkeypatch):
    (tmp_path / "data" / "thing").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    config = fitcheck_config(plugin_path, tmp_path, max_steps=2)
    config.data = Path("data/thing")
    trainer = Trainer(config, "fitcheck", config.output, World())
    assert trainer.config.data == tmp_path / "data" / "thing"
    saved = yaml.safe_load((config.output / "config.yaml").read_text())
    assert saved["data"] == str(tmp_path / "data" / "thing")
    assert saved["origin"] == {"cwd": str(tmp_path), "run_dir": str(config.output)}
    trainer.train()
    monkeypatch.chdir(tmp_path / "data")  # resuming from elsewhere with the same absolute data
    config.data = tmp_path / "data" / "thing"
    assert Trainer(config, "fitcheck", config.output, World()).start_step == 2


def test_signal_stops_after_the_step_with_a_checkpoint(plugin_path, tmp_path):
    config = fitcheck_config(plugin_path, tmp_path, max_steps=20, ckpt_every=10)
    trainer = Trainer(config, "fitcheck", config.output, World())

    def interrupt(step, optimizers, produced):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    trainer.callbacks.append(TrainingCallback("after_step", interrupt))
    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as stop:
        trainer.train()
    assert signal.getsignal(signal.SIGINT) is previous  # handlers restored
    assert (stop.value.step, stop.value.signal_name) == (4, "SIGINT")
    assert stop.value.checkpoint == config.output / "ckpt" / "step-000004.pt"
    assert [s for s, _ in list_checkpoints(config.output)] == [4]
    assert Trainer(config, "fitcheck", config.output, World()).start_step == 4


def test_a_pause_saves_the_step_waits_and_changes_nothing(plugin_path, tmp_path):
    import threading

    reference = fitcheck_config(plugin_path, tmp_path / "reference", max_steps=12, ckpt_every=0, log_every=1)
    expected = Trainer(reference, "fitcheck", reference.output, World()).train()

    config = fitcheck_config(plugin_path, tmp_path / "paused", max_steps=12, ckpt_every=0, log_every=1)
    trainer = Trainer(config, "fitcheck", config.output, World())
    trainer.callbacks.append(TrainingCallback("after_step", lambda step, *_: step == 4 and trainer.pause.set()))
    result = {}
    thread = threading.Thread(target=lambda: result.update(trainer.train()))
    thread.start()
    deadline = time.monotonic() + 30
    while not list_checkpoints(config.output) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)
    # Paused after step 5 (the callback ran in step index 4): its state is on disk, and no step follows.
    assert [s for s, _ in list_checkpoints(config.output)] == [5] and thread.is_alive()
    assert json.loads((config.output / "metrics.json").read_text())["train"][-1]["step"] == 5
    trainer.pause.clear()
    thread.join(30)
    assert not thread.is_alive() and result == expected  # the pause changed nothing
    elapsed = trainer.history["train"][-1]["time"]["elapsed_s"]
    assert elapsed < 0.5, f"the pause counted as training time ({elapsed:.2f} s)"


def test_ctrl_c_while_paused_stops_with_the_paused_checkpoint(plugin_path, tmp_path):
    config = fitcheck_config(plugin_path, tmp_path, max_steps=20, ckpt_every=0)
    trainer = Trainer(config, "fitcheck", config.output, World())

    def pause_then_interrupt(step, optimizers, produced):
        if step == 2:
            trainer.pause.set()
            signal.setitimer(signal.ITIMER_REAL, 0.3)  # SIGALRM below stands in for a later Ctrl-C

    trainer.callbacks.append(TrainingCallback("after_step", pause_then_interrupt))
    previous = signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    try:
        with pytest.raises(TrainingInterrupted) as stop:
            trainer.train()
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert (stop.value.step, stop.value.signal_name) == (3, "SIGINT")
    assert stop.value.checkpoint == config.output / "ckpt" / "step-000003.pt"
