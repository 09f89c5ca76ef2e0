"""`sparse3d-eval run=RUN data=... version=... split=... out=...`: the keys are documented,
resolve to the run's own values when left out, and a method that evaluates on its own
held-out data only (a renderer) refuses them in one line naming the method. (The detector's
evaluation on other databases: tests/methods/test_detector_eval.py.)"""

import os
import re
from pathlib import Path

import pytest
import torch
from clirun import run_cli

from sparse3d.engine.method import EvalSource, Method
from sparse3d.synthetic.objects.generator import (
    SyntheticObjectsConfig,
    write_synthetic_objects,
)


@pytest.fixture(scope="module")
def splat_run(tmp_path_factory) -> Path:
    data = write_synthetic_objects(tmp_path_factory.mktemp("objects"),
                                   SyntheticObjectsConfig(objects=("sphere",), resolution=32, num_test_views=2))[0]
    out = tmp_path_factory.mktemp("runs") / "splat"
    trained = run_cli("sparse3d-train", "method=splat", f"data={data}", f"output={out}", "trainer.max_steps=2",
                      "trainer.progress=false", "model.num_random=100", env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert trained.returncode == 0, trained.stderr
    return out


@pytest.mark.parametrize("args", [["--help"], ["run=r", "--help"]])
def test_help_documents_the_keys(args):
    result = run_cli("sparse3d-eval", *args, env=dict(os.environ))
    assert result.returncode == 0 and result.stderr == ""
    text = " ".join(result.stdout.split())
    for key in ("--data", "--version", "--split", "--out"):
        assert re.search(rf"{key} \{{None\}}\|(PATH|STR) .*\(default: None\)", text), key
    assert "default RUN_DIR/eval_<version>_<split>" in text
    if args == ["--help"]:
        assert "sparse3d-eval run=RUN_DIR data=DATAROOT [version=VERSION] [split=SPLIT] [out=OUT_DIR]" in text


def test_source_takes_the_runs_values_where_left_out(tmp_path):
    run = tmp_path / "run"
    assert EvalSource().resolved(Path("/own"), "v1.0-synth", "synth_val", run) == \
        EvalSource(Path("/own"), "v1.0-synth", "synth_val", run / "eval_v1.0-synth_synth_val")
    other = EvalSource(Path("/other"), "v1.0-mini", "mini_val", tmp_path / "o")
    assert other.resolved(Path("/own"), "v1.0-synth", "synth_val", run) == other
    assert EvalSource(split="x").as_dict() == {"data": None, "version": None, "split": "x", "out": None}


def test_by_default_a_method_evaluates_on_its_own_data_only():
    class Renderer(Method):
        get_param_groups = get_train_batch = get_outputs = get_loss_dict = None

        def get_eval_metrics(self, step):
            return {"psnr": 30.0}

    renderer = Renderer(None, None, torch.device("cpu"))
    assert renderer.get_eval_report(1) == {"psnr": 30.0}
    with pytest.raises(NotImplementedError, match="^Renderer evaluates on its own held-out data only"):
        renderer.get_eval_report(1, EvalSource(split="val"))


def test_renderer_run_refuses_other_data_in_one_line(splat_run, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = run_cli("sparse3d-eval", f"run={splat_run}", f"data={tmp_path}", "split=val", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert re.fullmatch(rf"sparse3d-eval: error: run {splat_run} \(method splat\): Splat evaluates on its own "
                        r"held-out data only; .*\n", result.stderr), result.stderr
    assert not (splat_run / "eval.json").exists()


def test_out_must_not_be_a_file(splat_run, tmp_path):
    (tmp_path / "file").write_text("x")
    result = run_cli("sparse3d-eval", f"run={splat_run}", f"out={tmp_path / 'file'}", env=dict(os.environ))
    assert result.returncode == 2 and re.search(r"out=.* is a file", result.stderr), result.stderr
