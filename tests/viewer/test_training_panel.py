"""The viewer's training panel without a browser: the progress line, the plots' data, the
pause button's effect on the trainer's event, and a run's panel following metrics.json."""

import threading

import numpy as np
import pytest

pytest.importorskip("viser")
panel = pytest.importorskip("sparse3d.viewer.training_panel")
viewer_app = pytest.importorskip("sparse3d.viewer.app")


def _entry(step, **values):
    return {"step": step, **values, "time": {"elapsed_s": 2.0 * step, "steps_per_s": 0.5}}


HISTORY = {
    "train": [_entry(10, loss=1.0, l1=0.5), _entry(20, loss=0.8, l1=0.4), _entry(30, loss=0.6)],
    "eval": [_entry(20, psnr=18.0), _entry(30, psnr=19.5, ssim=0.7)],
}


def test_progress_line():
    assert panel.progress_text(HISTORY, 150) == "training: step 30 / 150 (20 %) · 0.5 steps/s · 4 min 0 s left · 1 min 0 s trained"
    assert panel.progress_text(HISTORY, None, paused=True) == "training: step 30 · 0.5 steps/s · 1 min 0 s trained · **paused**"
    assert panel.progress_text({"train": []}, 100) == "training: no step logged yet"
    assert panel.progress_text({"train": [_entry(7300, loss=1.0)]}, 10_000).endswith("1 h 30 min left · 4 h 3 min trained")


def test_plot_data_aligns_series_on_their_steps():
    steps, loss, l1 = panel.plot_data(HISTORY["train"], ["loss", "l1"])
    np.testing.assert_array_equal(steps, [10, 20, 30])
    np.testing.assert_array_equal(loss, [1.0, 0.8, 0.6])
    np.testing.assert_array_equal(l1, [0.5, 0.4, np.nan])  # the last entry has no l1
    steps, ssim = panel.plot_data(HISTORY["eval"], ["ssim"])
    np.testing.assert_array_equal(steps, [30])
    np.testing.assert_array_equal(ssim, [0.7])


def test_panel_plots_and_pause_button():
    import viser

    server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    try:
        pause = threading.Event()
        training = panel.TrainingPanel(server, pause)
        training.update(HISTORY, 150)
        assert sorted(training.plots) == ["eval: psnr", "eval: ssim", "training losses"]
        keys, plot = training.plots["training losses"]
        assert keys == ("l1", "loss") and len(plot.data) == 3
        assert training.progress.content.startswith("training: step 30 / 150")
        training.toggle_pause()
        assert pause.is_set() and training.button.label == "resume training" and "**paused**" in training.progress.content
        training.toggle_pause()
        assert not pause.is_set() and training.button.label == "pause training"
        # New data updates the plots in place; a new series rebuilds its plot.
        more = {"train": HISTORY["train"] + [_entry(40, loss=0.5, l1=0.3)], "eval": HISTORY["eval"]}
        training.update(more, 150)
        assert training.plots["training losses"][1] is plot and len(plot.data[0]) == 4
        assert panel.TrainingPanel(server).button is None  # no trainer in this process: no button
    finally:
        server.stop()
