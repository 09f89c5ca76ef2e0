"""Two runs seen from one camera, side by side in one picture: the left half of the first
run's render beside the right half of the second's (a split screen), so that the render
panel compares them under the same camera, whichever way the browser turns."""

from typing import Any

import torch
from torch import Tensor

from sparse3d.geometry.cameras import Cameras

DIVIDER_PIXELS = 2
"""Width of the line between the two halves."""


class Comparison:
    """Renders ``left`` and ``right`` (methods, or anything with their
    ``get_outputs_for_camera``) from the same camera and joins the halves.

    The divider is black in colour channels and marked invalid (NaN) in the others, which
    the render panel paints white.
    """

    def __init__(self, left: Any, right: Any) -> None:
        self.left, self.right = left, right

    def get_outputs_for_camera(self, camera: Cameras) -> dict[str, Tensor]:
        """Each image channel both render, float [H, W, C]: columns left of the middle
        from ``left``, the others from ``right``."""
        a, b = self.left.get_outputs_for_camera(camera), self.right.get_outputs_for_camera(camera)
        joined = {}
        for key in a.keys() & b.keys():
            if not (a[key].dim() == 3 and a[key].shape == b[key].shape and a[key].is_floating_point()):
                continue
            half = a[key].shape[1] // 2
            image = torch.cat([a[key][:, :half], b[key][:, half:]], dim=1).float()
            lo, hi = max(half - DIVIDER_PIXELS // 2, 0), half + (DIVIDER_PIXELS + 1) // 2
            image[:, lo:hi] = 0.0 if image.shape[-1] == 3 else float("nan")
            joined[key] = image
        return joined
