"""Two CPU processes under torchrun (gloo) train like one process with the combined batch."""

import json

import torch
from clirun import run_cli

from sparse3d.engine.checkpoint import load_checkpoint


def test_two_processes_match_one_with_combined_batch(plugin_env, tmp_path):
    args = ["method=fitcheck", "trainer.max_steps=60", "trainer.eval_every=30", "trainer.ckpt_every=30",
            "trainer.progress=false",
            "model.batch_size=64"]
    single, double = tmp_path / "single", tmp_path / "double"
    one = run_cli("sparse3d-train", *args, f"output={single}", env=plugin_env)
    assert one.returncode == 0, one.stderr
    two = run_cli("torchrun", "--standalone", "--nproc_per_node=2", "-m", "sparse3d.cli.train", *args,
                  f"output={double}", env=plugin_env)
    assert two.returncode == 0, two.stderr

    a = load_checkpoint(single / "ckpt" / "step-000060.pt")["method"]
    b = load_checkpoint(double / "ckpt" / "step-000060.pt")["method"]
    for name in a:
        # Gradients are averaged in a different order, so equal up to float rounding.
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)
    # ... and not trivially: training moved the parameters far beyond that tolerance.
    start = load_checkpoint(single / "ckpt" / "step-000030.pt")["method"]
    assert any((start[n] - a[n]).abs().max() > 1e-2 for n in a)

    ma = json.loads((single / "metrics.json").read_text())
    mb = json.loads((double / "metrics.json").read_text())
    for ea, eb in zip(ma["eval"], mb["eval"], strict=True):
        assert ea["step"] == eb["step"]
        assert abs(ea["eval_mse"] - eb["eval_mse"]) <= 1e-4 * ea["eval_mse"]
    for ta, tb in zip(ma["train"], mb["train"], strict=True):
        assert abs(ta["loss"] - tb["loss"]) <= 1e-4 * ta["loss"]
