"""Training curves of a run: its losses and evaluation metrics over steps, as a PNG.

Reads the run's metrics.json; needs matplotlib (imported only here, with the Agg backend,
so no display is needed).
"""

import io
import json
from pathlib import Path
from typing import Any

from sparse3d.engine.logging import scalars
from sparse3d.io.atomic import write_bytes_atomic

_MAX_COLUMNS = 3


def curve_series(entries: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """The metrics of the entries as series: key -> (steps, values), timing left out."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for entry in entries:
        for key, value in scalars(entry).items():
            if key.startswith("time/"):
                continue
            steps, values = series.setdefault(key, ([], []))
            steps.append(int(entry["step"]))
            values.append(value)
    return series


def write_curves(run_dir: Path, out: Path | None = None) -> Path:
    """Plots ``run_dir/metrics.json``: the training losses together, each eval metric apart.

    Args:
        run_dir: a run directory written by sparse3d-train.
        out: the PNG to write (default ``run_dir/curves.png``).

    Returns:
        The path of the PNG written.

    Raises:
        ImportError: matplotlib is not installed.
        FileNotFoundError: the run has no metrics.json.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, whatever display the caller has
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    out = run_dir / "curves.png" if out is None else Path(out)
    history = json.loads((run_dir / "metrics.json").read_text())
    train = curve_series(history.get("train", []))
    evals = curve_series(history.get("eval", []))

    panels = 1 + len(evals)
    cols = min(panels, _MAX_COLUMNS)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows), squeeze=False)
    flat = axes.ravel()
    ax = flat[0]
    for key, (steps, values) in train.items():
        ax.plot(steps, values, label=key)
    if train and all(v > 0 for _, values in train.values() for v in values):
        ax.set_yscale("log")  # losses span decades
    ax.set_title("training losses")
    ax.set_xlabel("step")
    if train:
        ax.legend(fontsize="small")
    for ax, (key, (steps, values)) in zip(flat[1:], evals.items()):
        ax.plot(steps, values, marker="o")
        ax.set_title(f"eval {key}")
        ax.set_xlabel("step")
    for ax in flat[panels:]:
        ax.set_visible(False)
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    write_bytes_atomic(out, png.getvalue())  # a reader never sees half a PNG
    return out
