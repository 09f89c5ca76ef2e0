"""Clicking a camera frustum: the browser's camera flies to that view, and the view's own
image appears in the GUI, to compare with what the page shows from there (the render
panel renders the method from exactly that camera)."""


import numpy as np
import viser

from sparse3d.engine.scene import CameraFrusta
from sparse3d.geometry.cameras import invert_rigid

LOOK_DISTANCE = 1.0
"""How far ahead of a view its look-at point is put (world units); orbiting turns about it."""


def view_pose(layer: CameraFrusta, view: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Where the browser's camera goes to see as view ``view`` of ``layer`` sees.

    Returns:
        position: float64 [3] the view's centre, world frame.
        look_at: float64 [3] :data:`LOOK_DISTANCE` ahead along its optical axis.
        up: float64 [3] its image's up direction (OpenCV -y).
        fov_y: its vertical field of view, radians.
    """
    c2w = invert_rigid(layer.cameras.viewmats[view:view + 1].double())[0].numpy()
    position = c2w[:3, 3]
    fov_y = float(layer.cameras.fovs_y[view])
    return position, position + LOOK_DISTANCE * c2w[:3, 2], -c2w[:3, 1], fov_y


class ViewPicker:
    """The GUI part of clicking a frustum: the view's name and image.

    Args:
        server: the viser server whose GUI shows the picked view.
    """

    def __init__(self, server: viser.ViserServer) -> None:
        self.server = server
        self.caption = server.gui.add_markdown("click a camera to fly to it")
        self.image: viser.GuiImageHandle | None = None  # made at the first click
        self.picked: tuple[str, int] | None = None

    def __call__(self, client: viser.ClientHandle, layer: CameraFrusta, view: int) -> None:
        """Shows the view's image, then flies ``client``'s camera to the view."""
        self.picked = (layer.name, view)
        self.caption.content = f"{layer.name}, view {view}: its image below; the page shows the scene from it"
        if layer.images is not None:
            picture = layer.images[view].numpy()
            if self.image is None:
                self.image = self.server.gui.add_image(picture, label="picked view", format="jpeg")
            else:
                self.image.image = picture
        position, look_at, up, fov_y = view_pose(layer, view)
        with client.atomic():
            client.camera.position = position
            client.camera.look_at = look_at
            client.camera.up_direction = up
            client.camera.fov = fov_y
