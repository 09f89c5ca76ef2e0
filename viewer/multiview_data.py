"""A multi-view data set as the viewer shows it before any training: its training and
held-out cameras as frusta with their images, and its initial points when it has them
(e.g. COLMAP's points3D)."""

from pathlib import Path

from sparse3d.data.dataset import MultiViewDataset
from sparse3d.data.loader import load_multiview
from sparse3d.engine.scene import CameraFrusta, PointCloud, SceneLayer

POINT_SIZE = 0.01
"""Drawn size of an initial point, world units."""


class MultiViewData:
    """The views of one data folder (nerfstudio, Blender or COLMAP, detected).

    Args:
        root: the data folder.
        num_train_views: use the folder's ``sparse_<k>.txt`` split (the sparse-view
            protocol), or None for the format's own split.

    Raises:
        FileNotFoundError, ValueError: as ``load_multiview`` (the folder, file and field).
    """

    def __init__(self, root: Path, num_train_views: int | None = None) -> None:
        self.root = Path(root)
        self.data: MultiViewDataset = load_multiview(self.root, num_train_views=num_train_views)

    def get_scene_layers(self) -> list[SceneLayer]:
        """The training views and the held-out views (each a CameraFrusta with its images,
        absent when empty), then the initial points if any."""
        data, layers = self.data, []
        for name, indices in (("training views", data.train_indices), ("held-out views", data.test_indices)):
            if len(indices):
                layers.append(CameraFrusta(data.cameras[indices], data.images[indices], name=name))
        if data.points is not None:
            layers.append(PointCloud(data.points, data.point_colors, point_size=POINT_SIZE, name="initial points"))
        return layers

    def status(self) -> str:
        """What the page says about the data set (markdown)."""
        data = self.data
        points = "" if data.points is None else f" · {len(data.points)} initial points"
        return (f"**{self.root.name}** · `{data.source or self.root}` · {len(data.cameras)} views of "
                f"{data.cameras.width} x {data.cameras.height} ({len(data.train_indices)} training, "
                f"{len(data.test_indices)} held out){points}")
