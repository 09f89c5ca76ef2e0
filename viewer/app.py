"""The viewer's sources and its entry point: a run directory (whatever its method's
``get_scene_layers()`` returns, and its latest metrics, refreshed whenever training writes
a newer checkpoint), a 3DGS PLY file, a multi-view data set before training, or a
nuScenes database with an optional submission (:mod:`sparse3d.viewer.detection_browser`).
``sparse3d-view`` finds :func:`serve` through the ``sparse3d.viewer`` entry point.
"""

import threading
from pathlib import Path
from typing import Any, Callable

import torch
import viser
from sparse3d.viewer.camera_path_panel import CameraPathPanel
from sparse3d.viewer.comparison import Comparison
from sparse3d.viewer.detection_browser import NuScenesViewer
from sparse3d.viewer.detection_database import DetectionDatabase
from sparse3d.viewer.gaussians_file import GaussiansFile
from sparse3d.viewer.layer_toggles import LayerToggles
from sparse3d.viewer.layers import DrawnLayer, draw_layers
from sparse3d.viewer.multiview_data import MultiViewData
from sparse3d.viewer.render_panel import BROWSER, RenderPanel, RenderPanelConfig
from sparse3d.viewer.served_page import ServedPage
from sparse3d.viewer.training_panel import TrainingPanel
from sparse3d.viewer.view_picker import ViewPicker

from sparse3d.engine.checkpoint import CheckpointError, list_checkpoints
from sparse3d.engine.config import ConfigError, load_yaml
from sparse3d.engine.run import load_trained_method, restore_newest
from sparse3d.engine.scene import SceneLayer
from sparse3d.io.read import read_json


class RunViewer(ServedPage):
    """Serves one run directory on ``http://host:port``.

    Args:
        run_dir: a directory written by ``sparse3d-train``.
        host: interface to bind; 127.0.0.1 keeps the viewer private to this machine.
        port: TCP port (0 picks a free one; see :attr:`port`).
        pause: the trainer's pause event when the viewer runs in the training process
            (``sparse3d-train ... viewer=true``): the GUI gets a pause / resume button.

    Raises:
        FileNotFoundError: if ``run_dir`` does not exist (before any server starts).
        NotADirectoryError: if ``run_dir`` is a file.
    """

    def __init__(self, run_dir: Path, host: str = "127.0.0.1", port: int = 8080,
                 pause: threading.Event | None = None) -> None:
        self.run_dir = Path(run_dir)
        if not self.run_dir.exists():
            raise FileNotFoundError(f"run directory {self.run_dir} does not exist")
        if not self.run_dir.is_dir():
            raise NotADirectoryError(f"run={self.run_dir} is a file, not a run directory")
        self._start(host, port)
        self.training = TrainingPanel(self.server, pause)
        self._metrics_seen: tuple[float, float] | None = None  # (metrics.json, config.yaml) modification times
        self._history: dict[str, list[dict[str, Any]]] = {}  # metrics.json as last read

    def _start(self, host: str, port: int) -> None:
        ServedPage.__init__(self, host, port)
        self.shown_step: int | None = None
        self.shown_layers: list[SceneLayer] = []
        self.drawn: list[DrawnLayer] = []
        self._root: viser.FrameHandle | None = None
        self._lock = threading.Lock()
        self.picker = ViewPicker(self.server)
        self.toggles = LayerToggles(self.server)
        self._loaded: tuple[bytes | None, str, Any] | None = None  # (config.yaml's bytes, method name, method)
        self.panel = RenderPanel(self.server, RenderPanelConfig(), self._lock, self._show_browser_splats)
        self.camera_path = CameraPathPanel(self.server, self._lock, lambda: self.panel.scene, self.run_dir)

    def refresh(self) -> bool:
        """Reloads the scene if the run has a newer checkpoint; returns True if it did.

        Without any checkpoint yet, the status says so (and that the viewer waits for one).
        """
        self._follow_metrics()
        checkpoints = list_checkpoints(self.run_dir)
        if not checkpoints:
            self._status.content = waiting_text(self.run_dir)
            return False
        if checkpoints[-1][0] == self.shown_step:
            return False
        with self._lock:
            config_path = self.run_dir / "config.yaml"
            config_text = config_path.read_bytes() if config_path.exists() else None
            if config_text is not None and self._loaded is not None and self._loaded[0] == config_text:
                # The same config: load the new weights into the method already built,
                # rather than rebuilding it and reading its data again.
                _, name, method = self._loaded
                step = restore_newest(method, self.run_dir)
            else:
                name, method, step = load_trained_method(self.run_dir, torch.device("cpu"))
                self._loaded = (config_text, name, method)
            with torch.no_grad():
                self._show(method, method.get_scene_layers(), self._status_text(name, step), step)
        return True

    def _show(self, scene: Any, layers: list[SceneLayer], status: str, step: int) -> None:
        """Draws ``layers`` in place of what was shown and gives ``scene`` (a method, or
        anything with its ``get_outputs_for_camera``) to the render panel; call with the
        lock held."""
        # One root node per refresh: removing it removes every node drawn under it.
        if self._root is not None:
            self._root.remove()
        self._root = self.server.scene.add_frame("/layers", show_axes=False)
        self.drawn = draw_layers(self.server.scene, layers, "/layers", self.picker)
        self.toggles.show(self.drawn)
        self._status.content = status
        self.shown_step, self.shown_layers = step, layers
        self.panel.set_scene(scene)

    @property
    def shown_handles(self) -> list[viser.SceneNodeHandle]:
        """Every node drawn for the shown layers, in drawing order."""
        return [node for layer in self.drawn for node in layer.nodes]

    def stop(self) -> None:
        """Stops the render panel and the server."""
        self.panel.stop()
        super().stop()

    def _show_browser_splats(self, server_renders: bool) -> None:
        # The server's render is the page's background: viser's own splats would hide it.
        for handle in self.shown_handles:
            if isinstance(handle, viser.GaussianSplatHandle):
                handle.visible = not server_renders

    def serve_forever(self, poll_seconds: float = 2.0) -> None:
        """Keeps the scene up to date until interrupted (Ctrl-C)."""
        self.follow(threading.Event(), poll_seconds)

    def follow(self, stop: threading.Event, poll_seconds: float = 2.0) -> None:
        """Keeps the scene and the training panel up to date until ``stop`` is set (or
        Ctrl-C), then stops the server.

        A checkpoint that cannot be read (e.g. of another config) is reported in the page
        and the terminal, and the viewer keeps polling for a newer one.
        """
        failed = None
        try:
            while not stop.wait(poll_seconds):
                try:
                    self.refresh()
                except (ConfigError, CheckpointError) as err:
                    if str(err) != failed:
                        print(f"sparse3d: viewer: {err}")
                    failed = str(err)
                    self._status.content = f"**cannot show** `{self.run_dir}`: {err}"
                else:
                    failed = None
        finally:
            self.stop()

    def _follow_metrics(self) -> None:
        """Shows metrics.json in the training panel when it (or config.yaml) changed."""
        metrics, config = self.run_dir / "metrics.json", self.run_dir / "config.yaml"
        seen = tuple(p.stat().st_mtime if p.exists() else 0.0 for p in (metrics, config))
        if seen == self._metrics_seen or not metrics.exists():
            return
        self._metrics_seen, self._history = seen, read_json(metrics, "metrics")
        max_steps = load_yaml(config).get("trainer", {}).get("max_steps") if config.exists() else None
        self.training.update(self._history, max_steps)

    def _status_text(self, method_name: str, step: int) -> str:
        lines = [f"**{method_name}** · `{self.run_dir}` · step {step}"]
        evals = self._history.get("eval", [])
        if evals:
            lines += [f"- {k}: {v:.4g}" for k, v in evals[-1].items() if isinstance(v, float)]
        return "\n".join(lines)


class PlyViewer(RunViewer):
    """Serves a 3DGS PLY file (the layout of the reference implementation, any SH degree,
    written by sparse3d or any other tool) on ``http://host:port``.

    Raises:
        FileNotFoundError, ValueError: as ``read_gaussians_ply`` (the file, the missing or
            bad property), before any server starts.
    """

    def __init__(self, ply: Path, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.file = GaussiansFile(ply)
        self.run_dir = None
        self._start(host, port)

    def refresh(self) -> bool:
        """Shows the file the first time; returns whether it did (a file does not change)."""
        if self.shown_step is not None:
            return False
        with self._lock:
            f = self.file
            status = f"**{f.path.name}** · `{f.path}` · {len(f.splats['means'])} Gaussians, SH degree {f.sh_degree}"
            self._show(f, f.get_scene_layers(), status, 0)
        return True


class CompareViewer(RunViewer):
    """Serves run ``run_dir`` like :class:`RunViewer`, and compares its render with the
    run ``other_dir`` (on the same data) in the render panel: this run's left half beside
    the other's right half, both from the browser's camera. Each run's newer checkpoints
    are followed.

    Raises:
        FileNotFoundError, NotADirectoryError: for either run directory, before any
            server starts.
    """

    def __init__(self, run_dir: Path, other_dir: Path, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.other_dir = Path(other_dir)
        if not self.other_dir.is_dir():
            raise FileNotFoundError(f"compare={self.other_dir}: no such run directory")
        super().__init__(run_dir, host, port)
        self._other: tuple[str, Any, int] | None = None  # (method name, method, step)

    def refresh(self) -> bool:
        """Reloads either run when it has a newer checkpoint; returns True if it did."""
        checkpoints = list_checkpoints(self.other_dir)
        if checkpoints and (self._other is None or checkpoints[-1][0] != self._other[2]):
            with self._lock:
                if self._other is None:
                    self._other = load_trained_method(self.other_dir, torch.device("cpu"))
                else:
                    self._other = (self._other[0], self._other[1], restore_newest(self._other[1], self.other_dir))
            self.shown_step = None  # shows this run again, beside the other's new state
        return super().refresh()

    def _show(self, scene: Any, layers: list[SceneLayer], status: str, step: int) -> None:
        if self._other is None:
            status += f"\n\nwaiting for a checkpoint in `{self.other_dir}` to compare with"
        else:
            name, other, other_step = self._other
            scene = Comparison(scene, other)
            status += (f"\n\nrender panel: this run on the left, **{name}** `{self.other_dir}` · step {other_step} "
                       "on the right")
        super()._show(scene, layers, status, step)
        if self._other is not None and self.panel.channel == BROWSER and "rgb" in self.panel.dropdown.options:
            self.panel.dropdown.value = "rgb"  # the comparison is in the panel: show it at once


def follow_training(run_dir: Path, pause: threading.Event, host: str = "127.0.0.1", port: int = 8080
                    ) -> Callable[[], None]:
    """Serves a run from a thread of the process that trains it, with a pause / resume
    button wired to ``pause`` (``Trainer.pause``); returns a function that stops it.

    This is the ``follow`` entry point of the ``sparse3d.viewer`` group, called by
    ``sparse3d-train ... viewer=true``.
    """
    viewer = RunViewer(run_dir, host, port, pause=pause)
    stop = threading.Event()
    thread = threading.Thread(target=viewer.follow, args=(stop, 1.0), name="sparse3d-viewer", daemon=True)
    thread.start()
    print(f"sparse3d: viewer at http://{host}:{viewer.port} (the run as training goes; pause it there)")

    def stop_viewer() -> None:
        stop.set()
        thread.join()

    return stop_viewer


class DataViewer(ServedPage):
    """Serves a multi-view data set before any training (:class:`MultiViewData`): its
    cameras with their images (click one to fly to it) and its initial points.

    Raises:
        FileNotFoundError, ValueError: as ``load_multiview`` (the folder, file and field),
            before any server starts.
    """

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 8080, num_train_views: int | None = None) -> None:
        self.data = MultiViewData(root, num_train_views)
        super().__init__(host, port)
        self.picker = ViewPicker(self.server)
        self.toggles = LayerToggles(self.server)
        self.shown_layers: list[SceneLayer] = []

    def refresh(self) -> bool:
        """Shows the data the first time; returns whether it did (the data does not change)."""
        if self.shown_layers:
            return False
        self.shown_layers = self.data.get_scene_layers()
        self.toggles.show(draw_layers(self.server.scene, self.shown_layers, "/layers", self.picker))
        self._status.content = self.data.status()
        return True


def serve(run_dir: Path | None = None, host: str = "127.0.0.1", port: int = 8080, ply: Path | None = None,
          nuscenes: Path | None = None, version: str = "v1.0-trainval", split: str | None = None,
          results: Path | None = None, data: Path | None = None, views: int | None = None,
          compare: Path | None = None) -> None:
    """Serves one source until interrupted (Ctrl-C): a run directory (following its
    training), a 3DGS PLY file (``ply``), a nuScenes database (``nuscenes``: its
    dataroot, with ``version``, an optional ``split`` and an optional submission
    ``results``), or a multi-view data set (``data``, with its ``sparse_<views>.txt``
    split when ``views`` is given). With ``compare``, a run is compared with that other
    run in the render panel (:class:`CompareViewer`).

    This is the ``app`` entry point of the ``sparse3d.viewer`` group, called by
    ``sparse3d-view``; errors reading the run (ConfigError, CheckpointError), the file
    (ValueError) or the database (NuScenesFormatError, a ValueError) propagate.
    """
    if nuscenes is not None:
        viewer = NuScenesViewer(DetectionDatabase(nuscenes, version, split, results), host, port)
    elif data is not None:
        viewer = DataViewer(data, host, port, views)
    elif ply is not None:
        viewer = PlyViewer(ply, host, port)
    elif compare is not None:
        viewer = CompareViewer(run_dir, compare, host, port)
    else:
        viewer = RunViewer(run_dir, host, port)
    viewer.refresh()
    print(f"sparse3d: viewer at http://{host}:{viewer.port} (Ctrl-C to stop)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"sparse3d: warning: host={host}: the viewer is reachable from other machines, without authentication")
    if isinstance(viewer, RunViewer) and viewer.shown_step is None:
        print(f"sparse3d: {waiting_text(viewer.run_dir).replace('`', '')}")
    try:
        viewer.serve_forever()
    except KeyboardInterrupt:
        pass


def waiting_text(run_dir: Path) -> str:
    """The status of a run directory without a checkpoint yet (markdown)."""
    return f"no checkpoint in `{run_dir}` yet: showing the run as soon as training writes `ckpt/step-*.pt`"
