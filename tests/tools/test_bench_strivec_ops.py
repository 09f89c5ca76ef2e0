"""tools/bench_strivec_ops.py runs (--small) and writes its figures: the keys, sample
counts and a positive speed-up for every op and the step (no timing is asserted)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import sparse3d

TOOL = Path(__file__).resolve().parents[2] / "tools" / "bench_strivec_ops.py"
CALLS = ["march_rays", "box_lookup l0", "box_lookup l1", "box_lookup l2", "trivector density l0", "trivector density l1",
         "trivector density l2", "trivector app l0", "trivector app l1", "trivector app l2", "volume_weights"]
WITH_BACKWARD = {name for name in CALLS if name.startswith(("trivector", "volume"))}


def positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


@pytest.mark.skipif(not sparse3d.HAS_NATIVE, reason="native extension not built (the tool compares it with the references)")
def test_small_run_writes_figures(tmp_path):
    out = tmp_path / "ops.json"
    run = subprocess.run(
        [sys.executable, str(TOOL), "--small", "--repeats", "1", "--ref-repeats", "1", "--threads", "1", "--json", str(out)],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1].startswith("summary: ")
    figures = json.loads(out.read_text())

    assert figures["small"] is True and figures["threads"] == 1
    assert figures["rays"] == 256 and 0 < figures["shaded_samples"] < figures["samples"]
    assert len(figures["tensors_per_level"]) == 3 and min(figures["tensors_per_level"]) > 0
    assert sorted(figures["ops"]) == sorted(CALLS)
    for name, row in figures["ops"].items():
        labels = ("fwd", "fwd_bwd") if name in WITH_BACKWARD else ("fwd",)
        assert {f"{label}_{what}" for label in labels for what in ("native_ms", "ref_ms", "speedup")} <= row.keys(), name
        assert all(positive(row[f"{label}_{what}"]) for label in labels for what in ("native_ms", "ref_ms", "speedup")), row
    assert sorted(figures["op_groups"]) == ["box_lookup", "march_rays", "trivector app", "trivector density", "volume_weights"]
    assert all(positive(v) for group in figures["op_groups"].values() for v in group.values())
    for key in ("ops_speedup_vs_ref", "step_fwd_speedup", "step_fwd_bwd_speedup", "step_fwd_native_ms", "step_fwd_bwd_ref_ms"):
        assert positive(figures[key]), key
    assert figures["ops_speedup_vs_ref"] == figures["step_fwd_bwd_speedup"]
