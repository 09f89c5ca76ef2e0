"""Training's timing in metrics.json and its TensorBoard events."""

import json

import pytest

from sparse3d.engine.distributed import World
from sparse3d.engine.logging import StepTimer, scalars, without_timing
from sparse3d.engine.registry import discover_methods
from sparse3d.engine.trainer import Trainer


def fitcheck_config(plugin_path, tmp_path, **trainer):
    config = discover_methods()["fitcheck"].default_config()
    config.output = tmp_path / "run"
    config.trainer.progress = False
    for key, value in trainer.items():
        setattr(config.trainer, key, value)
    return config


def _timings(metrics: dict, group: str) -> list[dict]:
    return [entry["time"] for entry in metrics[group]]


def test_every_entry_has_increasing_elapsed_time_and_a_rate(plugin_path, tmp_path):
    config = fitcheck_config(plugin_path, tmp_path, max_steps=30, log_every=5, eval_every=10, ckpt_every=10)
    final = Trainer(config, "fitcheck", config.output, World()).train()
    metrics = json.loads((config.output / "metrics.json").read_text())
    train, evals = _timings(metrics, "train"), _timings(metrics, "eval")
    assert len(train) == 6 and len(evals) == 3
    elapsed = [t["elapsed_s"] for t in train]
    assert all(a < b for a, b in zip(elapsed, elapsed[1:]))
    assert all(t["steps_per_s"] > 0 for t in train + evals)
    assert all(t["elapsed_s"] > 0 for t in evals)
    assert "time" not in final  # train() returns the metrics only


def test_elapsed_time_keeps_counting_on_resume(plugin_path, tmp_path):
    config = fitcheck_config(plugin_path, tmp_path, max_steps=10, log_every=5, ckpt_every=5)
    Trainer(config, "fitcheck", config.output, World()).train()
    first = json.loads((config.output / "metrics.json").read_text())
    config.trainer.max_steps = 20
    Trainer(config, "fitcheck", config.output, World()).train()
    resumed = json.loads((config.output / "metrics.json").read_text())
    assert resumed["train"][:2] == first["train"]  # the resumed run's history is kept as written
    elapsed = [t["elapsed_s"] for t in _timings(resumed, "train")]
    assert all(a < b for a, b in zip(elapsed, elapsed[1:])), elapsed


def test_timing_is_the_only_difference_between_identical_runs(plugin_path, tmp_path):
    runs = []
    for name in ("a", "b"):
        config = fitcheck_config(plugin_path, tmp_path / name, max_steps=10, log_every=2, eval_every=5)
        Trainer(config, "fitcheck", config.output, World()).train()
        metrics = json.loads((config.output / "metrics.json").read_text())
        runs.append({group: [without_timing(e) for e in entries] for group, entries in metrics.items()})
    assert runs[0] == runs[1]


def test_step_timer_rate_covers_the_last_interval():
    timer = StepTimer(start_step=100, offset_s=50.0)
    timer.start()
    first = timer.lap(110)
    assert first["elapsed_s"] >= 50.0 and first["steps_per_s"] > 0
    assert timer.lap(110)["steps_per_s"] == first["steps_per_s"]  # an eval entry at the same step


def test_scalars_flatten_timing_and_drop_what_is_not_a_number():
    entry = {"step": 3, "loss": 0.5, "lpips": None, "views": [1.0], "time": {"elapsed_s": 2.0, "steps_per_s": 4.0}}
    assert scalars(entry) == {"loss": 0.5, "time/elapsed_s": 2.0, "time/steps_per_s": 4.0}


def test_tensorboard_events_hold_every_entry(plugin_path, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = fitcheck_config(plugin_path, tmp_path, max_steps=10, log_every=2, eval_every=5)
    Trainer(config, "fitcheck", config.output, World()).train()
    events = list((config.output / "tensorboard").glob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
    accumulator = EventAccumulator(str(config.output / "tensorboard"))
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    assert {"train/loss", "train/mse", "eval/eval_mse", "train/time/steps_per_s"} <= set(tags)
    assert [e.step for e in accumulator.Scalars("train/loss")] == [2, 4, 6, 8, 10]
    assert [e.step for e in accumulator.Scalars("eval/eval_mse")] == [5, 10]


def test_without_tensorboard_no_events_folder(plugin_path, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "torch.utils.tensorboard":
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    config = fitcheck_config(plugin_path, tmp_path, max_steps=4)
    Trainer(config, "fitcheck", config.output, World()).train()
    assert not (config.output / "tensorboard").exists()
    assert (config.output / "metrics.json").exists()
