"""sparse3d-eval: evaluate a trained run, or score a nuScenes detection submission.

    sparse3d-eval run=RUN_DIR
    sparse3d-eval run=RUN_DIR data=DATAROOT [version=VERSION] [split=SPLIT] [out=OUT_DIR]
    sparse3d-eval results=PRED.json dataroot=DIR [version=VERSION] [split=SPLIT] [out=OUT_DIR]

The keys given pick the evaluation: run= evaluates a run, results= scores a submission.
A run is evaluated on its own held-out data (RUN_DIR/eval.json), or, given any of data=,
version=, split=, out=, on other data: a detector on any split of any nuScenes v1.0-format
database, writing the submission, the metrics and eval.json into OUT_DIR (default
RUN_DIR/eval_<version>_<split>) while RUN_DIR/eval.json stays the run's own evaluation.
"""

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

from sparse3d.cli.overrides import fail, help_text, parse_config, split_assignments
from sparse3d.engine.checkpoint import CheckpointError
from sparse3d.engine.config import ConfigError
from sparse3d.engine.method import EvalSource
from sparse3d.io.atomic import write_json_atomic

PROG = "sparse3d-eval"


@dataclass
class RunEval:
    """Evaluate a trained run on its held-out data (writes RUN_DIR/eval.json and
    RUN_DIR/curves.png), or, given any of data, version, split, out, on other data (detectors:
    any split of any nuScenes v1.0-format database; writes OUT/eval.json beside the
    submission and metrics)."""

    run: Path
    """Run directory written by sparse3d-train."""
    data: Path | None = None
    """Dataroot to evaluate on (detectors: a nuScenes v1.0-format one); default the run's own."""
    version: str | None = None
    """Database version (the nuScenes table folder, e.g. v1.0-mini); default the run's."""
    split: str | None = None
    """Split to evaluate (official or from the version's splits.json); default the run's held-out split."""
    out: Path | None = None
    """Folder of the submission, metrics and eval.json of an evaluation on other data;
    default RUN_DIR/eval_<version>_<split>."""

    def source(self) -> EvalSource | None:
        """The data to evaluate on instead of the run's own, or None when no key asks for it."""
        if (self.data, self.version, self.split, self.out) == (None, None, None, None):
            return None
        return EvalSource(self.data, self.version, self.split, self.out)


@dataclass
class NuScenesEval:
    """Score a nuScenes detection submission exactly as the official devkit does."""

    results: Path
    """Submission JSON (the official format)."""
    dataroot: Path
    """nuScenes root folder (holding the version folder, samples/, sweeps/, maps/)."""
    version: str = "v1.0-trainval"
    """Table folder name, e.g. v1.0-trainval, v1.0-mini, or a synthetic version."""
    split: str = "val"
    """Official split name, or a split of the version folder's splits.json."""
    out: Path = Path("nuscenes_eval")
    """Where metrics_summary.json, metrics_details.json and the plots/ folder go."""
    cache: Path | None = Path.home() / ".cache" / "sparse3d" / "nuscenes"
    """Keeps the split's parsed ground truth here (invalidated when a table changes), so
    evaluating several submissions on the same split skips parsing the tables; None disables it."""


def evaluate_run(run_dir: Path, source: EvalSource | None = None) -> tuple[dict, Path]:
    """Evaluates the newest checkpoint of ``run_dir`` on its own held-out data, or on ``source``.

    Returns:
        (the report, where it was written: ``RUN_DIR/eval.json``, or ``eval.json`` in the
        source's output folder).

    Raises:
        NotImplementedError: ``source`` given for a method that evaluates on its own data
            only (the message names the run and the method).
    """
    from sparse3d.engine.run import load_trained_method

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name, method, step = load_trained_method(run_dir, device, source.data if source is not None else None)
    try:
        with torch.no_grad():
            report = {"method": name, "step": step, **method.get_eval_report(step, source)}
    except NotImplementedError as err:
        raise NotImplementedError(f"run {run_dir} (method {name}): {err}") from None
    path = Path(run_dir) / "eval.json" if source is None else Path(report["source"]["out"]) / "eval.json"
    write_json_atomic(path, report)
    return report, path


def write_run_curves(run_dir: Path) -> None:
    """Writes RUN_DIR/curves.png; says in one line why not when it cannot."""
    from sparse3d.engine.curves import write_curves

    if importlib.util.find_spec("matplotlib") is None:
        print("sparse3d: skipped curves.png: matplotlib is not installed (pip install matplotlib)")
        return
    if not (run_dir / "metrics.json").is_file():
        print(f"sparse3d: skipped curves.png: {run_dir / 'metrics.json'} does not exist")
        return
    print(f"sparse3d: wrote {write_curves(run_dir)}")


def write_nuscenes_plots(out: Path) -> None:
    """Writes the devkit's PR and TP-error plots into OUT/plots; says in one line why not when it cannot."""
    from sparse3d.detection.nuscenes.eval.plots import write_detection_plots

    if importlib.util.find_spec("matplotlib") is None:
        print("sparse3d: skipped the nuScenes plots: matplotlib is not installed (pip install matplotlib)")
        return
    written = write_detection_plots(out)
    print(f"sparse3d: wrote {len(written)} plots to {Path(out) / 'plots'}")


def check_output_folders(command: NuScenesEval | RunEval) -> None:
    """Checks, before the evaluation, that ``out`` (and ``cache``) are not files.

    Raises:
        NotADirectoryError: naming the key and the file.
    """
    for key in ("out", "cache"):
        folder = getattr(command, key, None)
        if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
            raise NotADirectoryError(f"{key}={folder} is a file; give a folder (it is created if missing)")


def main(command: RunEval | NuScenesEval) -> None:
    """Runs one evaluation and prints its result."""
    if isinstance(command, RunEval):
        source = command.source()
        if source is not None:
            check_output_folders(command)
        report, path = evaluate_run(command.run, source)
        summary = {k: v for k, v in report.items() if not isinstance(v, (list, dict))}
        print(json.dumps(summary, indent=2))
        if source is None:
            print(f"sparse3d: wrote {path}")
            write_run_curves(Path(command.run))
        else:
            print(f"sparse3d: evaluated on {report['source']['data']} version {report['source']['version']} split "
                  f"{report['source']['split']}; wrote {path} and the method's files beside it")
        return
    from sparse3d.detection.nuscenes.eval.evaluate import evaluate_nuscenes
    from sparse3d.detection.nuscenes.eval.report import format_metrics_table

    check_output_folders(command)
    summary = evaluate_nuscenes(
        command.results, command.dataroot, command.version, command.split, command.out, cache_dir=command.cache
    )
    print(format_metrics_table(summary))
    print(f"sparse3d: wrote {command.out / 'metrics_summary.json'} and {command.out / 'metrics_details.json'}")
    write_nuscenes_plots(command.out)


FORMS = {"run": RunEval, "results": NuScenesEval}
"""The key that picks each evaluation."""


def full_help() -> str:
    """The help of both evaluations: the usage, then each one's keys."""
    parts = [__doc__.strip(), ""]
    for kind in FORMS.values():
        parts.append(help_text(_default(kind), PROG, kind.__doc__))
    return "\n".join(parts)


def _default(kind: type) -> RunEval | NuScenesEval:
    """The config with its required keys (the fields without default) marked as such."""
    if kind is RunEval:
        return RunEval(run=tyro.MISSING)
    return NuScenesEval(results=tyro.MISSING, dataroot=tyro.MISSING)


def entrypoint(argv: list[str] | None = None) -> None:
    """Console script: picks the evaluation from the keys given (run= or results=)."""
    assignments, wants_help = split_assignments(sys.argv[1:] if argv is None else argv, PROG)
    picked = [key for key in FORMS if key in assignments]
    if len(picked) != 1:
        if wants_help:
            print(full_help(), end="")
            raise SystemExit(0)
        which = "one of them, " if picked else ""
        fail(PROG, f"give run=RUN_DIR, or results=PRED.json dataroot=DIR ... ({which}see {PROG} --help)")
    kind = FORMS[picked[0]]
    command = parse_config(_default(kind), assignments, PROG, kind.__doc__, wants_help)
    try:
        main(command)
    except (ConfigError, CheckpointError, ValueError, NotImplementedError) as err:
        fail(PROG, str(err))
    except OSError as err:  # a missing or unreadable file, a file where a folder must be
        fail(PROG, str(err) if not err.filename else f"{err.filename}: {err.strerror or err}")


if __name__ == "__main__":
    entrypoint()
