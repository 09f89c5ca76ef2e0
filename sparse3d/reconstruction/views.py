"""Rendering a batch of cameras through any method's ``get_outputs_for_camera``: the shared
first step of the exporters (TSDF meshes, orbit strips and videos).

A renderer is anything with the method contract's ``get_outputs_for_camera(camera)``
(DESIGN.md, "The method contract"), so a trained :class:`~sparse3d.engine.method.Method`
qualifies, and so does an analytic renderer in a test.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor
from tqdm import tqdm

from sparse3d.data.images import write_png
from sparse3d.geometry.cameras import Cameras


class CameraRenderer(Protocol):
    """What the exporters need of a method: its view from one camera."""

    def get_outputs_for_camera(self, camera: Cameras) -> dict[str, Tensor]:
        """"rgb" float [H, W, 3], "alpha" float [H, W, 1] and "depth" float [H, W, 1]
        (camera-frame z, 0 where alpha is 0) for a batch of one camera."""


@dataclass(frozen=True)
class RenderedViews:
    """C views rendered by :func:`render_views`, on the CPU."""

    rgbs: Tensor
    """float32 [C, H, W, 3] colours in [0, 1] (clamped: splats overshoot slightly)."""
    alphas: Tensor
    """float32 [C, H, W, 1] opacity in [0, 1]."""
    depths: Tensor | None
    """float32 [C, H, W, 1] expected camera-frame z (OpenCV +z forward), or None when not
    asked for."""


def render_views(renderer: CameraRenderer, cameras: Cameras, with_depth: bool, progress: bool = False) -> RenderedViews:
    """Renders each of ``cameras`` with ``renderer.get_outputs_for_camera``, one at a time
    (a method's memory use grows with the batch), without gradients.

    Args:
        renderer: e.g. a trained method (:class:`CameraRenderer`).
        cameras: C cameras of one image size W x H.
        with_depth: whether the "depth" channel is needed.
        progress: show a tqdm bar (for the command line).

    Returns:
        The views, float32 on the CPU.

    Raises:
        ValueError: the renderer returns no "rgb" or "alpha", or no "depth" when
            ``with_depth``, or a channel of another size than [H, W, 1 or 3].
    """
    need = ("rgb", "alpha", "depth") if with_depth else ("rgb", "alpha")
    name = type(renderer).__name__
    rgbs, alphas, depths = [], [], []
    with torch.no_grad():
        for i in tqdm(range(len(cameras)), desc="rendering", unit="view", disable=not progress, leave=False):
            outputs = renderer.get_outputs_for_camera(cameras[i])
            missing = [key for key in need if key not in outputs]
            if missing:
                raise ValueError(
                    f"{name}.get_outputs_for_camera returns no {', '.join(repr(k) for k in missing)} "
                    f"(it returns {', '.join(sorted(outputs)) or 'nothing'}); this export needs {', '.join(need)}"
                )
            for key, store, channels in (("rgb", rgbs, 3), ("alpha", alphas, 1), ("depth", depths, 1)):
                if key not in need:
                    continue
                value = outputs[key].detach().to("cpu", torch.float32)
                if value.shape != (cameras.height, cameras.width, channels):
                    raise ValueError(f"{name}.get_outputs_for_camera: '{key}' must be "
                                     f"[{cameras.height}, {cameras.width}, {channels}], got {list(value.shape)}")
                store.append(value)
    return RenderedViews(
        rgbs=torch.stack(rgbs).clamp(0.0, 1.0),
        alphas=torch.stack(alphas).clamp(0.0, 1.0),
        depths=torch.stack(depths) if with_depth else None,
    )


def write_renders(renderer: CameraRenderer, cameras: Cameras, names: list[str], folder: Path) -> list[Path]:
    """Renders each of ``cameras`` (its "rgb" over white) and writes it as FOLDER/NAME.png
    (the name's stem, atomically), e.g. a run's held-out views beside their ground truth.

    Args:
        renderer: e.g. a trained method (:class:`CameraRenderer`).
        cameras: C cameras of one image size.
        names: C file names (their stems name the PNGs).
        folder: created if missing.

    Returns:
        The C paths written.
    """
    views = render_views(renderer, cameras, with_depth=False)
    paths = [Path(folder) / f"{Path(name).stem}.png" for name in names]
    for path, rgb in zip(paths, views.rgbs):
        write_png(path, (rgb * 255).round().to(torch.uint8).numpy())
    return paths
