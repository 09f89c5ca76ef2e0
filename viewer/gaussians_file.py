"""A 3DGS PLY file as the viewer shows it: its Gaussians as a scene layer, and renders of
them from any camera for the render panel (the same functions as ``splat``'s)."""

import math
from pathlib import Path

from torch import Tensor

from sparse3d.engine.scene import SceneLayer
from sparse3d.geometry.cameras import Cameras
from sparse3d.methods.splat import camera_outputs, splats_layer
from sparse3d.render.ply import read_gaussians_ply
from sparse3d.render.rasterize import RasterConfig


class GaussiansFile:
    """The Gaussians of one 3DGS PLY file (any SH degree, any tool's).

    Raises:
        FileNotFoundError, ValueError: as ``read_gaussians_ply``: the file, or the
            property that is missing or bad (e.g. a point cloud without 3DGS fields).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.splats = read_gaussians_ply(self.path)
        self.sh_degree = math.isqrt(self.splats["shN"].shape[1] + 1) - 1  # shN: [N, (d + 1)^2 - 1, 3]

    def get_scene_layers(self) -> list[SceneLayer]:
        """The Gaussians, with their degree-0 colours."""
        return [splats_layer(self.splats, name=self.path.name)]

    def get_outputs_for_camera(self, camera: Cameras) -> dict[str, Tensor]:
        """"rgb", "alpha" and "depth" of the Gaussians seen from one camera, over white, at
        the file's SH degree (``splat``'s ``camera_outputs``)."""
        return camera_outputs(self.splats, camera, RasterConfig(), self.sh_degree)
