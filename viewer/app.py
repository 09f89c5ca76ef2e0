"""A viser app that shows a run: its Gaussians, its training cameras and its metrics,
refreshed whenever training writes a newer checkpoint."""

import json
import math
import threading
from pathlib import Path

import numpy as np
import torch
import viser

from sparse3d.engine.checkpoint import list_checkpoints
from sparse3d.engine.method import ViewerContent
from sparse3d.engine.run import load_trained_method
from sparse3d.geometry.cameras import invert_rigid, quats_from_rotmats


class RunViewer:
    """Serves one run directory on ``http://host:port``.

    Args:
        run_dir: a directory written by ``sparse3d-train``.
        host: interface to bind; 127.0.0.1 keeps the viewer private to this machine.
        port: TCP port (0 picks a free one; see :attr:`port`).
    """

    def __init__(self, run_dir: Path, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.run_dir = Path(run_dir)
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self.shown_step: int | None = None
        self.shown_content: ViewerContent | None = None
        self._status = self.server.gui.add_markdown("loading ...")
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return self.server.get_port()

    def refresh(self) -> bool:
        """Reloads the scene if the run has a newer checkpoint; returns True if it did."""
        checkpoints = list_checkpoints(self.run_dir)
        if not checkpoints or checkpoints[-1][0] == self.shown_step:
            return False
        with self._lock:
            name, method, step = load_trained_method(self.run_dir, torch.device("cpu"))
            with torch.no_grad():
                content = method.get_viewer_content()
            self._show(content)
            self._status.content = self._status_text(name, step)
            self.shown_step, self.shown_content = step, content
        return True

    def serve_forever(self, poll_seconds: float = 2.0) -> None:
        """Keeps the scene up to date until interrupted (Ctrl-C)."""
        stop = threading.Event()
        try:
            while not stop.wait(poll_seconds):
                self.refresh()
        finally:
            self.server.stop()

    def _show(self, content: ViewerContent) -> None:
        scene = self.server.scene
        if content.splat_centers is not None:
            scene.add_gaussian_splats(
                "/splats",
                centers=_numpy(content.splat_centers),
                covariances=_numpy(content.splat_covariances),
                rgbs=_numpy(content.splat_rgbs).clip(0.0, 1.0),
                opacities=_numpy(content.splat_opacities)[:, None],
            )
        if content.camera_viewmats is not None:
            c2w = invert_rigid(content.camera_viewmats)
            wxyz = quats_from_rotmats(c2w[:, :3, :3])
            for i, K in enumerate(content.camera_Ks):
                image = None if content.camera_images is None else _numpy(content.camera_images[i])
                # Without an image, the principal point at the centre gives the image size.
                height, width = image.shape[:2] if image is not None else (2 * float(K[1, 2]), 2 * float(K[0, 2]))
                scene.add_camera_frustum(
                    f"/cameras/{i}",
                    fov=2 * math.atan(0.5 * height / float(K[1, 1])),  # vertical, as viser expects
                    aspect=width / height,
                    scale=0.15,
                    image=image,
                    wxyz=_numpy(wxyz[i]),
                    position=_numpy(c2w[i, :3, 3]),
                )

    def _status_text(self, method_name: str, step: int) -> str:
        lines = [f"**{method_name}** · `{self.run_dir}` · step {step}"]
        metrics_path = self.run_dir / "metrics.json"
        if metrics_path.exists():
            evals = json.loads(metrics_path.read_text()).get("eval", [])
            if evals:
                lines += [f"- {k}: {v:.4g}" for k, v in evals[-1].items() if isinstance(v, float)]
        return "\n".join(lines)


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()
