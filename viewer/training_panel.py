"""Training, live: the run's progress (step, steps/s, time left), its loss and evaluation
curves as plots, and, when the viewer runs in the training process
(``sparse3d-train ... viewer=true``), a button that pauses and resumes training."""

import threading
from typing import Any

import numpy as np
import viser

from sparse3d.engine.curves import curve_series
from sparse3d.engine.logging import TIME_KEY

PLOT_HEIGHT = 160
"""Height of each plot in the GUI, pixels."""
SERIES_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
"""Line colours of a plot's series (cycled)."""


def progress_text(history: dict[str, list[dict[str, Any]]], max_steps: int | None, paused: bool = False) -> str:
    """One markdown line: the step reached, its share of ``max_steps``, the training speed
    and the time left at that speed (from the last training entry of a metrics.json
    history), and whether training is paused."""
    entries = history.get("train") or []
    if not entries:
        return "training: no step logged yet"
    last = entries[-1]
    step, timing = int(last["step"]), last.get(TIME_KEY) or {}
    rate = float(timing.get("steps_per_s", 0.0))
    parts = [f"step {step}" + (f" / {max_steps} ({100 * step / max_steps:.0f} %)" if max_steps else "")]
    if rate > 0:
        parts.append(f"{rate:.3g} steps/s")
        if max_steps and step < max_steps:
            parts.append(f"{_duration((max_steps - step) / rate)} left")
    if "elapsed_s" in timing:
        parts.append(f"{_duration(float(timing['elapsed_s']))} trained")
    if paused:
        parts.append("**paused**")
    return "training: " + " · ".join(parts)


def _duration(seconds: float) -> str:
    """'42 s', '3 min 5 s', '2 h 10 min'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def plot_data(entries: list[dict[str, Any]], keys: list[str]) -> tuple[np.ndarray, ...]:
    """uPlot's data for ``keys`` of the entries: the steps, then one float64 array per key
    (NaN where an entry lacks the key)."""
    series = curve_series(entries)
    steps = sorted({s for key in keys for s in series.get(key, ([], []))[0]})
    position = {s: i for i, s in enumerate(steps)}
    columns = [np.array(steps, np.float64)]
    for key in keys:
        column = np.full(len(steps), np.nan)
        for s, v in zip(*series.get(key, ([], []))):
            column[position[s]] = v
        columns.append(column)
    return tuple(columns)


class TrainingPanel:
    """The GUI's "training" folder: progress, one plot of the training losses, one plot
    per evaluation metric, and the pause button when ``pause`` is given.

    Args:
        server: the viser server.
        pause: the trainer's pause event (``Trainer.pause``) when the viewer runs in the
            training process, else None (no button).
    """

    def __init__(self, server: viser.ViserServer, pause: threading.Event | None = None) -> None:
        self.server, self.pause = server, pause
        self.folder = server.gui.add_folder("training")
        with self.folder:
            self.progress = server.gui.add_markdown("training: no step logged yet")
            self.button = None
            if pause is not None:
                self.button = server.gui.add_button("pause training", hint="pause after the current step (it is saved)")
                self.button.on_click(lambda _: self.toggle_pause())
        self.plots: dict[str, tuple[tuple[str, ...], viser.GuiUplotHandle]] = {}  # title -> (keys, plot)
        self._history: dict[str, list[dict[str, Any]]] = {}
        self._max_steps: int | None = None

    def toggle_pause(self) -> None:
        """Pauses training after its current step, or resumes it."""
        if self.pause is None:
            return
        if self.pause.is_set():
            self.pause.clear()
        else:
            self.pause.set()
        self.button.label = "resume training" if self.pause.is_set() else "pause training"
        self.progress.content = progress_text(self._history, self._max_steps, self.pause.is_set())

    def update(self, history: dict[str, list[dict[str, Any]]], max_steps: int | None) -> None:
        """Shows a metrics.json history: the progress line and the plots."""
        self._history, self._max_steps = history, max_steps
        self.progress.content = progress_text(history, max_steps, self.pause is not None and self.pause.is_set())
        train = history.get("train") or []
        evals = history.get("eval") or []
        groups = {"training losses": sorted(curve_series(train))}
        groups.update({f"eval: {key}": [key] for key in sorted(curve_series(evals))})
        for title, keys in groups.items():
            if keys:
                self._plot(title, tuple(keys), plot_data(train if title == "training losses" else evals, keys))

    def _plot(self, title: str, keys: tuple[str, ...], data: tuple[np.ndarray, ...]) -> None:
        known = self.plots.get(title)
        if known is not None and known[0] == keys:
            known[1].data = data
            return
        if known is not None:
            known[1].remove()
        series = ({"label": "step"}, *({"label": key, "stroke": SERIES_COLORS[i % len(SERIES_COLORS)], "width": 1.5}
                                       for i, key in enumerate(keys)))
        with self.folder:
            plot = self.server.gui.add_uplot(data, series, title=title, height=PLOT_HEIGHT,
                                             scales={"x": {"time": False}}, legend={"show": len(keys) > 1})
        self.plots[title] = (keys, plot)
