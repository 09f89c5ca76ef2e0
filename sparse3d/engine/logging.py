"""Where training's metrics go besides metrics.json: wall-clock timing and TensorBoard.

Timing is kept apart from the metrics themselves: each metrics.json entry carries it
under its own key, ``"time": {"elapsed_s": ..., "steps_per_s": ...}``, so that comparing
two runs' metrics means dropping that one key (see :func:`without_timing`).
"""

import json
import math
import time
from pathlib import Path
from typing import Any

TIME_KEY = "time"
"""The key of an entry's timing in metrics.json."""


class StepTimer:
    """Wall-clock time of a training process, continued across resumptions.

    ``elapsed_s`` counts from :meth:`start` (the step loop starting) plus ``offset_s`` (the
    time the run had already trained before this process resumed it); ``steps_per_s`` is the
    rate over the steps since the previous :meth:`lap`.

    Args:
        start_step: the step the loop starts after (0, or the resumed checkpoint's step).
        offset_s: seconds already spent training this run by earlier processes.

    Examples:
        >>> timer = StepTimer(start_step=0)
        >>> timer.start()
        >>> sorted(timer.lap(10))
        ['elapsed_s', 'steps_per_s']
    """

    def __init__(self, start_step: int, offset_s: float = 0.0) -> None:
        self.offset_s = offset_s
        self._t0 = self._last_t = time.perf_counter()
        self._last_step = start_step
        self._rate = 0.0

    def start(self) -> None:
        """Starts the clock (the step loop begins now)."""
        self._t0 = self._last_t = time.perf_counter()

    def exclude(self, seconds: float) -> None:
        """Leaves out ``seconds`` just spent not training (a pause) from the elapsed time
        and from the current interval's rate."""
        self._t0 += seconds
        self._last_t += seconds

    def lap(self, step: int) -> dict[str, float]:
        """The timing after ``step`` steps; starts the next interval of ``steps_per_s``."""
        now = time.perf_counter()
        if step > self._last_step:  # a second entry at the same step keeps the last rate
            self._rate = (step - self._last_step) / max(now - self._last_t, 1e-9)
            self._last_step, self._last_t = step, now
        return {"elapsed_s": self.offset_s + (now - self._t0), "steps_per_s": self._rate}


def elapsed_in(history: dict[str, list[dict[str, Any]]]) -> float:
    """The largest ``elapsed_s`` recorded in a metrics history (0 when none is)."""
    times = [e[TIME_KEY]["elapsed_s"] for entries in history.values() for e in entries
             if isinstance(e, dict) and isinstance(e.get(TIME_KEY), dict) and "elapsed_s" in e[TIME_KEY]]
    return max(times, default=0.0)


def previous_elapsed(run_dir: Path, history: dict[str, list[dict[str, Any]]]) -> float:
    """Seconds this run had trained before: the larger of the restored history's and the
    run's metrics.json's (which may be ahead of the checkpoint after a kill; the time spent on
    the steps redone still counts as time spent)."""
    elapsed = elapsed_in(history)
    path = Path(run_dir) / "metrics.json"
    try:
        on_disk = json.loads(path.read_text())
        if isinstance(on_disk, dict):
            elapsed = max(elapsed, elapsed_in(on_disk))
    except (OSError, ValueError):  # absent or unreadable: the checkpoint's history is enough
        pass
    return elapsed


def without_timing(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry without its timing: what is equal between two runs of the same config."""
    return {k: v for k, v in entry.items() if k != TIME_KEY}


def scalars(entry: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of an entry (its timing flattened as ``time/<key>``), without ``step``."""
    flat: dict[str, float] = {}
    for key, value in entry.items():
        if key == "step":
            continue
        if key == TIME_KEY and isinstance(value, dict):
            flat.update({f"{TIME_KEY}/{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return {k: float(v) for k, v in flat.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class TensorBoardLog:
    """Scalars of the metrics entries as TensorBoard events in ``RUN/tensorboard/``.

    A no-op when the optional ``tensorboard`` package is not installed (``pip install
    sparse3d[tensorboard]``). Only the main process should make one.

    Args:
        log_dir: the events folder.
        purge_step: on resumption, the first step after the checkpoint: events of the
            interrupted process from there on are hidden, as the steps are run again.
    """

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the optional extra is absent: log nothing, say nothing
            self._writer = None
            return
        self._writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    @property
    def enabled(self) -> bool:
        """Whether events are written."""
        return self._writer is not None

    def add_entry(self, group: str, entry: dict[str, Any]) -> None:
        """Adds an entry's scalars as ``<group>/<key>`` at its step."""
        if self._writer is None:
            return
        for key, value in scalars(entry).items():
            self._writer.add_scalar(f"{group}/{key}", value, global_step=int(entry["step"]))

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
