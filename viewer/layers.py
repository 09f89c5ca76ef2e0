"""Draws scene layers (engine.scene) in a viser scene, each by its type: Splats as
Gaussian splats, CameraFrusta as frusta with their images, PointCloud as points, Boxes3D as
line boxes with heading markers and score labels, Mesh as a mesh. Nothing here knows which
method or data set made them."""

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import trimesh
import viser
from PIL import Image
from sparse3d.viewer.colors import DEFAULT_COLOR, label_color

from sparse3d.detection.boxes import box_corners
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

FRUSTUM_SCALE = 0.15
"""Depth of a drawn camera frustum, in world units."""
FRUSTUM_IMAGE_PIXELS = 256
"""Long side of the image shown in a frustum (a thumbnail: a data set's full images would
all be sent to every browser)."""
BOX_LINE_PIXELS = 2.0
"""Thickness of box edges, in screen pixels."""
BOX_EDGES = np.array([(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1])
"""int [12, 2] corners (numbered as ``box_corners`` numbers them) joined by a box's edges."""


ViewClick = Callable[[viser.ClientHandle, CameraFrusta, int], None]
"""Called with the client, the layer and the view's index when a frustum is clicked."""


@dataclass(frozen=True)
class DrawnLayer:
    """One layer as drawn: the frame that holds its nodes (hiding it hides the layer) and
    the nodes."""

    layer: SceneLayer
    frame: viser.FrameHandle
    nodes: list[viser.SceneNodeHandle]


def draw_layers(scene: viser.SceneApi, layers: list[SceneLayer], root: str,
                on_view_click: ViewClick | None = None) -> list[DrawnLayer]:
    """Draws each layer by its type under the node path ``root``, shown or hidden as its
    ``visible`` says.

    Args:
        scene: the server's (or one client's) scene.
        layers: what ``Method.get_scene_layers()`` returned.
        root: parent node path, e.g. "/layers"; layer i becomes the frame
            "{root}/{i}-{name}", its nodes drawn under it.
        on_view_click: called when a camera frustum is clicked in the page (e.g. a
            :class:`~sparse3d.viewer.view_picker.ViewPicker`), or None.

    Returns:
        Each layer's frame and nodes, in drawing order.

    Raises:
        TypeError: for an object that is not a scene layer.
    """
    drawn = []
    for i, layer in enumerate(layers):
        draw = _DRAW.get(type(layer))
        if draw is None:
            raise TypeError(f"draw_layers: {type(layer).__name__} is not a scene layer (engine.scene.SceneLayer)")
        path = f"{root}/{i}-{layer.name}"
        frame = scene.add_frame(path, show_axes=False, visible=layer.visible)
        nodes = draw(scene, f"{path}/{type(layer).__name__.lower()}", layer)
        if on_view_click is not None and isinstance(layer, CameraFrusta):
            for view, node in enumerate(nodes):
                node.on_click(lambda event, layer=layer, view=view: on_view_click(event.client, layer, view))
        drawn.append(DrawnLayer(layer, frame, nodes))
    return drawn


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
            fov=float(cams.fovs_y[i]),  # vertical, as viser expects
            aspect=cams.width / cams.height,
            scale=FRUSTUM_SCALE,
            image=None if layer.images is None else thumbnail(_numpy(layer.images[i]), FRUSTUM_IMAGE_PIXELS),
            wxyz=_numpy(wxyz[i]),
            position=_numpy(c2w[i, :3, 3]),
        )
        for i in range(len(cams))
    ]


def thumbnail(image: np.ndarray, long_side: int) -> np.ndarray:
    """uint8 [h, w, 3]: ``image`` (uint8 [H, W, 3]) shrunk to at most ``long_side`` pixels
    on its long side (returned as is when already smaller)."""
    height, width = image.shape[:2]
    scale = long_side / max(height, width)
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def _draw_points(scene: viser.SceneApi, name: str, layer: PointCloud) -> list[viser.SceneNodeHandle]:
    colors = DEFAULT_COLOR if layer.colors is None else _numpy(layer.colors)
    return [scene.add_point_cloud(name, _numpy(layer.points), colors, point_size=layer.point_size)]


def _draw_boxes(scene: viser.SceneApi, name: str, layer: Boxes3D) -> list[viser.SceneNodeHandle]:
    segments, colors = box_segments(layer)
    handles: list[viser.SceneNodeHandle] = [
        scene.add_line_segments(name, segments, colors, thickness=BOX_LINE_PIXELS, thickness_units="screen")
    ]
    if layer.scores is not None:
        boxes = layer.boxes.detach().double().cpu().numpy()
        tops = _world_points(layer, boxes[:, :3] + np.outer(boxes[:, 5] / 2, [0.0, 0.0, 1.0]))  # top face centres
        handles += [scene.add_label(f"{name}/score-{i}", f"{score:.2f}", position=top, anchor="bottom-center")
                    for i, (score, top) in enumerate(zip(layer.scores.tolist(), tops))]
    return handles


def box_segments(layer: Boxes3D) -> tuple[np.ndarray, np.ndarray]:
    """What draws a layer's boxes: each box's 12 edges and its heading marker (a segment
    from its centre to the centre of its front face), in the world frame.

    Returns:
        points: float32 [B * 13, 2, 3] segment ends, box by box (its edges, then its marker).
        colors: uint8 [B * 13, 2, 3]: the layer's colours if it has them, else by label,
            else :data:`DEFAULT_COLOR`.
    """
    boxes = layer.boxes.detach().double().cpu().numpy()
    corners = box_corners(boxes)  # [B, 8, 3]
    front = corners[:, 4:].mean(axis=1)
    ends = np.concatenate([corners[:, BOX_EDGES], np.stack([boxes[:, :3], front], 1)[:, None]], axis=1)  # [B, 13, 2, 3]
    if layer.colors is not None:
        colors = _numpy(layer.colors)
    elif layer.labels is not None:
        colors = np.array([label_color(label) for label in layer.labels.tolist()], np.uint8).reshape(-1, 3)
    else:
        colors = np.tile(np.array(DEFAULT_COLOR, np.uint8), (len(boxes), 1))
    points = _world_points(layer, ends.reshape(-1, 3)).reshape(-1, 2, 3)
    return points.astype(np.float32), np.repeat(colors, 13 * 2, axis=0).reshape(-1, 2, 3)


def _world_points(layer: Boxes3D, points: np.ndarray) -> np.ndarray:
    """float64 [N, 3] LiDAR-frame points of the layer in the world frame."""
    if layer.lidar_to_world is None:
        return points
    to_world = layer.lidar_to_world.detach().double().cpu().numpy()
    return points @ to_world[:3, :3].T + to_world[:3, 3]


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
