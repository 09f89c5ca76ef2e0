"""Scene layers: the typed things a method asks viewers and exporters to draw.

A method returns a list of them from ``Method.get_scene_layers()``; the viewer draws each
by its type, so neither the engine nor the viewer names a method's internals. Every layer
is in the world frame (Boxes3D: the LiDAR frame, placed in the world by
``lidar_to_world``), and cameras follow the library convention: OpenCV world-to-camera
``viewmats`` [C, 4, 4] and intrinsics ``Ks`` [C, 3, 3] (:class:`Cameras`). Tensors may
live on any device and must not require grad (layers are detached snapshots).
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from sparse3d.geometry.cameras import Cameras


@dataclass(frozen=True)
class Splats:
    """N 3-D Gaussians, as a splat viewer draws them (view-independent colour).

    Examples:
        >>> Splats(torch.zeros(1, 3), torch.eye(3)[None], torch.ones(1, 3), torch.ones(1)).means.shape
        torch.Size([1, 3])
    """

    means: Tensor
    """float [N, 3] centres, world frame."""
    covariances: Tensor
    """float [N, 3, 3] covariances, world frame (R S S^T R^T)."""
    rgbs: Tensor
    """float [N, 3] colours in [0, 1]."""
    opacities: Tensor
    """float [N] opacities in [0, 1]."""
    name: str = "splats"
    """Label of the layer in a viewer."""
    visible: bool = True
    """Whether a viewer shows the layer at first (a hidden one can be switched on)."""

    def __post_init__(self) -> None:
        n = _rows(self.means)
        _check(self, "means", self.means, (n, 3), float)
        _check(self, "covariances", self.covariances, (n, 3, 3), float)
        _check(self, "rgbs", self.rgbs, (n, 3), float)
        _check(self, "opacities", self.opacities, (n,), float)


@dataclass(frozen=True)
class PointCloud:
    """P coloured points (e.g. LiDAR returns, or the points a method started from)."""

    points: Tensor
    """float [P, 3] positions, world frame."""
    colors: Tensor | None = None
    """uint8 [P, 3] RGB per point, or None for one colour chosen by the viewer."""
    point_size: float = 0.01
    """Diameter of a drawn point, in world units."""
    name: str = "points"
    """Label of the layer in a viewer."""
    visible: bool = True
    """Whether a viewer shows the layer at first (a hidden one can be switched on)."""

    def __post_init__(self) -> None:
        p = _rows(self.points)
        _check(self, "points", self.points, (p, 3), float)
        _check(self, "colors", self.colors, (p, 3), torch.uint8)


@dataclass(frozen=True)
class Boxes3D:
    """B oriented 3-D boxes in the LiDAR frame (DESIGN.md, "Boxes"), e.g. detections."""

    boxes: Tensor
    """float [B, 7] (x, y, z, dx, dy, dz, yaw): centre, size with ``dx`` along the heading,
    and the heading's rotation about +z in radians, LiDAR frame."""
    labels: Tensor | None = None
    """int64 [B] class indices (the viewer colours by them), or None."""
    scores: Tensor | None = None
    """float [B] confidences in [0, 1], or None for ground truth."""
    colors: Tensor | None = None
    """uint8 [B, 3] RGB per box (e.g. by evaluation outcome), or None to colour by label."""
    lidar_to_world: Tensor | None = None
    """float [4, 4] rigid transform from the LiDAR frame to the world frame of the other
    layers, or None when the two frames are the same."""
    name: str = "boxes"
    """Label of the layer in a viewer."""
    visible: bool = True
    """Whether a viewer shows the layer at first (a hidden one can be switched on)."""

    def __post_init__(self) -> None:
        b = _rows(self.boxes)
        _check(self, "boxes", self.boxes, (b, 7), float)
        _check(self, "labels", self.labels, (b,), torch.int64)
        _check(self, "scores", self.scores, (b,), float)
        _check(self, "colors", self.colors, (b, 3), torch.uint8)
        _check(self, "lidar_to_world", self.lidar_to_world, (4, 4), float)


@dataclass(frozen=True)
class CameraFrusta:
    """C cameras drawn as frusta, optionally with their images (e.g. the training views)."""

    cameras: Cameras
    """C pinhole cameras: OpenCV world-to-camera ``viewmats`` [C, 4, 4], ``Ks`` [C, 3, 3]."""
    images: Tensor | None = None
    """uint8 [C, H, W, 3] RGB seen by each camera (H, W = ``cameras.height``,
    ``cameras.width``), or None."""
    name: str = "cameras"
    """Label of the layer in a viewer."""
    visible: bool = True
    """Whether a viewer shows the layer at first (a hidden one can be switched on)."""

    def __post_init__(self) -> None:
        cams = self.cameras
        _check(self, "images", self.images, (len(cams), cams.height, cams.width, 3), torch.uint8)


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh (e.g. a TSDF or marching-cubes surface)."""

    vertices: Tensor
    """float [V, 3] positions, world frame."""
    faces: Tensor
    """int64 [F, 3] vertex indices per triangle, counter-clockwise seen from outside."""
    vertex_colors: Tensor | None = None
    """uint8 [V, 3] RGB per vertex, or None for one colour chosen by the viewer."""
    name: str = "mesh"
    """Label of the layer in a viewer."""
    visible: bool = True
    """Whether a viewer shows the layer at first (a hidden one can be switched on)."""

    def __post_init__(self) -> None:
        v = _rows(self.vertices)
        _check(self, "vertices", self.vertices, (v, 3), float)
        _check(self, "faces", self.faces, (_rows(self.faces), 3), torch.int64)
        _check(self, "vertex_colors", self.vertex_colors, (v, 3), torch.uint8)
        if self.faces.numel() and (self.faces.min() < 0 or self.faces.max() >= v):
            raise ValueError(f"Mesh {self.name!r}: faces must index the {v} vertices")


SceneLayer = Splats | PointCloud | Boxes3D | CameraFrusta | Mesh
"""Any of the layer types; viewers dispatch on the type."""


def _rows(t: Tensor) -> int:
    """The leading size of ``t`` (-1 for a 0-d tensor, which then fails its shape check)."""
    return t.shape[0] if t.dim() else -1


def _check(layer: object, field: str, value: Tensor | None, shape: tuple[int, ...], dtype: type | torch.dtype) -> None:
    """Raises ValueError unless ``value`` (if not None) has ``shape`` and ``dtype``
    (``float`` = any floating dtype) and does not require grad."""
    if value is None:
        return
    dtype_ok = value.is_floating_point() if dtype is float else value.dtype == dtype
    if tuple(value.shape) != shape or not dtype_ok:
        kind = "float" if dtype is float else str(dtype).removeprefix("torch.")
        raise ValueError(
            f"{type(layer).__name__} {getattr(layer, 'name', '')!r}: {field} must be {kind} {list(shape)}, "
            f"got {value.dtype} {list(value.shape)}"
        )
    if value.requires_grad:
        raise ValueError(f"{type(layer).__name__}: {field} requires grad; pass a detached tensor")
