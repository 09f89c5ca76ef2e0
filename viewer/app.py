"""A viser app that shows a run: whatever its method's ``get_scene_layers()`` returns, and
its latest metrics, refreshed whenever training writes a newer checkpoint.

Each layer is drawn by its type (engine.scene): Splats as Gaussian splats, CameraFrusta as
frusta with their images, PointCloud as points, Boxes3D as wireframe boxes, Mesh as a
mesh. Nothing here knows which method made them. ``sparse3d-view`` finds :func:`serve`
through the ``sparse3d.viewer`` entry point.
"""

import math
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import trimesh
import viser
from sparse3d.viewer.gaussians_file import GaussiansFile
from sparse3d.viewer.render_panel import RenderPanel, RenderPanelConfig

from sparse3d.engine.checkpoint import CheckpointError, list_checkpoints
from sparse3d.engine.config import ConfigError
from sparse3d.engine.run import load_trained_method, restore_newest
from sparse3d.engine.scene import (
    Boxes3D,
    CameraFrusta,
    Mesh,
    PointCloud,
    SceneLayer,
    Splats,
)
from sparse3d.geometry.cameras import invert_rigid
from sparse3d.geometry.rotations import quats_from_rotmats
from sparse3d.io.read import read_json

FRUSTUM_SCALE = 0.15
"""Depth of a drawn camera frustum, in world units."""
DEFAULT_COLOR = (90, 200, 255)
"""RGB of points and meshes without colours, and of unlabelled boxes."""
LABEL_COLORS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212))
"""RGB of boxes by class label (cycled)."""


class RunViewer:
    """Serves one run directory on ``http://host:port``.

    Args:
        run_dir: a directory written by ``sparse3d-train``.
        host: interface to bind; 127.0.0.1 keeps the viewer private to this machine.
        port: TCP port (0 picks a free one; see :attr:`port`).

    Raises:
        FileNotFoundError: if ``run_dir`` does not exist (before any server starts).
        NotADirectoryError: if ``run_dir`` is a file.
    """

    def __init__(self, run_dir: Path, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.run_dir = Path(run_dir)
        if not self.run_dir.exists():
            raise FileNotFoundError(f"run directory {self.run_dir} does not exist")
        if not self.run_dir.is_dir():
            raise NotADirectoryError(f"run={self.run_dir} is a file, not a run directory")
        self._start(host, port)

    def _start(self, host: str, port: int) -> None:
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self.shown_step: int | None = None
        self.shown_layers: list[SceneLayer] = []
        self.shown_handles: list[viser.SceneNodeHandle] = []
        self._root: viser.FrameHandle | None = None
        self._status = self.server.gui.add_markdown("loading ...")
        self._lock = threading.Lock()
        self._loaded: tuple[bytes | None, str, Any] | None = None  # (config.yaml's bytes, method name, method)
        self.panel = RenderPanel(self.server, RenderPanelConfig(), self._lock, self._show_browser_splats)

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return self.server.get_port()

    @property
    def status(self) -> str:
        """The status text shown in the page (markdown)."""
        return self._status.content

    def refresh(self) -> bool:
        """Reloads the scene if the run has a newer checkpoint; returns True if it did.

        Without any checkpoint yet, the status says so (and that the viewer waits for one).
        """
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
        self.shown_handles = draw_layers(self.server.scene, layers, "/layers")
        self._status.content = status
        self.shown_step, self.shown_layers = step, layers
        self.panel.set_scene(scene)

    def stop(self) -> None:
        """Stops the render panel and the server."""
        self.panel.stop()
        self.server.stop()

    def _show_browser_splats(self, server_renders: bool) -> None:
        # The server's render is the page's background: viser's own splats would hide it.
        for handle in self.shown_handles:
            if isinstance(handle, viser.GaussianSplatHandle):
                handle.visible = not server_renders

    def serve_forever(self, poll_seconds: float = 2.0) -> None:
        """Keeps the scene up to date until interrupted (Ctrl-C).

        A checkpoint that cannot be read (e.g. of another config) is reported in the page
        and the terminal, and the viewer keeps polling for a newer one.
        """
        stop = threading.Event()
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

    def _status_text(self, method_name: str, step: int) -> str:
        lines = [f"**{method_name}** · `{self.run_dir}` · step {step}"]
        metrics_path = self.run_dir / "metrics.json"
        if metrics_path.exists():
            evals = read_json(metrics_path, "metrics").get("eval", [])
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


def serve(run_dir: Path | None = None, host: str = "127.0.0.1", port: int = 8080, ply: Path | None = None) -> None:
    """Serves a run directory and follows its training, or a 3DGS PLY file (``ply``),
    until interrupted (Ctrl-C).

    This is the ``app`` entry point of the ``sparse3d.viewer`` group, called by
    ``sparse3d-view``; errors reading the run (ConfigError, CheckpointError) or the file
    (ValueError) propagate.
    """
    viewer = PlyViewer(ply, host, port) if ply is not None else RunViewer(run_dir, host, port)
    viewer.refresh()
    print(f"sparse3d: viewer at http://{host}:{viewer.port} (Ctrl-C to stop)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"sparse3d: warning: host={host}: the viewer is reachable from other machines, without authentication")
    if viewer.shown_step is None:
        print(f"sparse3d: {waiting_text(viewer.run_dir).replace('`', '')}")
    try:
        viewer.serve_forever()
    except KeyboardInterrupt:
        pass


def waiting_text(run_dir: Path) -> str:
    """The status of a run directory without a checkpoint yet (markdown)."""
    return f"no checkpoint in `{run_dir}` yet: showing the run as soon as training writes `ckpt/step-*.pt`"


def draw_layers(scene: viser.SceneApi, layers: list[SceneLayer], root: str) -> list[viser.SceneNodeHandle]:
    """Draws each layer by its type under the node path ``root``.

    Args:
        scene: the server's (or one client's) scene.
        layers: what ``Method.get_scene_layers()`` returned.
        root: parent node path, e.g. "/layers"; layer i becomes "{root}/{i}-{name}".

    Returns:
        Every node drawn, in drawing order.

    Raises:
        TypeError: for an object that is not a scene layer.
    """
    handles = []
    for i, layer in enumerate(layers):
        draw = _DRAW.get(type(layer))
        if draw is None:
            raise TypeError(f"draw_layers: {type(layer).__name__} is not a scene layer (engine.scene.SceneLayer)")
        handles += draw(scene, f"{root}/{i}-{layer.name}", layer)
    return handles


def _draw_splats(scene: viser.SceneApi, name: str, layer: Splats) -> list[viser.SceneNodeHandle]:
    return [
        scene.add_gaussian_splats(
            name,
            centers=_numpy(layer.means),
            covariances=_numpy(layer.covariances),
            rgbs=_numpy(layer.rgbs).clip(0.0, 1.0),
            opacities=_numpy(layer.opacities)[:, None],
        )
    ]


def _draw_frusta(scene: viser.SceneApi, name: str, layer: CameraFrusta) -> list[viser.SceneNodeHandle]:
    cams = layer.cameras
    c2w = invert_rigid(cams.viewmats)  # viser places a frustum by its camera-to-world pose (OpenCV axes)
    wxyz = quats_from_rotmats(c2w[:, :3, :3])
    return [
        scene.add_camera_frustum(
            f"{name}/{i}",
            fov=2 * math.atan(0.5 * cams.height / float(cams.Ks[i, 1, 1])),  # vertical, as viser expects
            aspect=cams.width / cams.height,
            scale=FRUSTUM_SCALE,
            image=None if layer.images is None else _numpy(layer.images[i]),
            wxyz=_numpy(wxyz[i]),
            position=_numpy(c2w[i, :3, 3]),
        )
        for i in range(len(cams))
    ]


def _draw_points(scene: viser.SceneApi, name: str, layer: PointCloud) -> list[viser.SceneNodeHandle]:
    colors = DEFAULT_COLOR if layer.colors is None else _numpy(layer.colors)
    return [scene.add_point_cloud(name, _numpy(layer.points), colors, point_size=layer.point_size)]


def _draw_boxes(scene: viser.SceneApi, name: str, layer: Boxes3D) -> list[viser.SceneNodeHandle]:
    # The boxes hang under a node at the LiDAR pose, so their own poses stay in the LiDAR frame.
    to_world = torch.eye(4) if layer.lidar_to_world is None else layer.lidar_to_world.cpu().float()
    frame = scene.add_frame(
        name, show_axes=False, wxyz=_numpy(quats_from_rotmats(to_world[:3, :3])), position=_numpy(to_world[:3, 3])
    )
    handles: list[viser.SceneNodeHandle] = [frame]
    for i, (x, y, z, dx, dy, dz, yaw) in enumerate(layer.boxes.tolist()):
        color = DEFAULT_COLOR if layer.labels is None else LABEL_COLORS[int(layer.labels[i]) % len(LABEL_COLORS)]
        handles.append(
            scene.add_box(
                f"{name}/{i}",
                color=color,
                dimensions=(dx, dy, dz),  # box axes: dx along the heading, dz up
                wireframe=True,
                wxyz=(math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)),  # yaw about +z
                position=(x, y, z),
            )
        )
    return handles


def _draw_mesh(scene: viser.SceneApi, name: str, layer: Mesh) -> list[viser.SceneNodeHandle]:
    colors = None if layer.vertex_colors is None else _numpy(layer.vertex_colors)
    # process=False keeps the vertices as given (no merging), so colours stay aligned.
    mesh = trimesh.Trimesh(_numpy(layer.vertices), _numpy(layer.faces), vertex_colors=colors, process=False)
    if colors is None:
        mesh.visual.face_colors = DEFAULT_COLOR
    return [scene.add_mesh_trimesh(name, mesh)]


_DRAW: dict[type, Callable[[viser.SceneApi, str, SceneLayer], list[viser.SceneNodeHandle]]] = {
    Splats: _draw_splats,
    CameraFrusta: _draw_frusta,
    PointCloud: _draw_points,
    Boxes3D: _draw_boxes,
    Mesh: _draw_mesh,
}


def _numpy(x: torch.Tensor) -> np.ndarray:
    """A CPU numpy copy; floating tensors as float32, which is what viser sends."""
    x = x.detach().cpu()
    return (x.float() if x.is_floating_point() else x).numpy()
