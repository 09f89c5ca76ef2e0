"""The GUI's "layers" folder: a checkbox per drawn layer that shows or hides it (a
method's extra layers, e.g. gaussianobject's earlier stages, start hidden)."""

import viser
from sparse3d.viewer.layers import DrawnLayer


class LayerToggles:
    """Checkboxes for the layers drawn last; a choice is kept for a layer of the same
    name when the scene is drawn again (a new checkpoint).

    Args:
        server: the viser server whose GUI holds the folder.
    """

    def __init__(self, server: viser.ViserServer) -> None:
        self.server = server
        self.folder = server.gui.add_folder("layers")
        self.boxes: list[viser.GuiCheckboxHandle] = []
        self.chosen: dict[str, bool] = {}  # layer name -> visibility the user chose

    def show(self, drawn: list[DrawnLayer]) -> None:
        """Offers a checkbox for each of ``drawn`` and applies the kept choices."""
        for box in self.boxes:
            box.remove()
        self.boxes = []
        with self.folder:
            for layer in drawn:
                visible = self.chosen.get(layer.layer.name, layer.layer.visible)
                layer.frame.visible = visible
                box = self.server.gui.add_checkbox(layer.layer.name, visible)
                box.on_update(lambda _, layer=layer, box=box: self._switch(layer, box.value))
                self.boxes.append(box)

    def _switch(self, layer: DrawnLayer, visible: bool) -> None:
        layer.frame.visible = visible
        self.chosen[layer.layer.name] = visible
