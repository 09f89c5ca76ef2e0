"""The render panel: the method's own render of each browser's camera, drawn as the page's
background.

viser's splats are the browser's approximation of a Gaussian run (view-independent
colour, its own sorting); methods without Gaussians (a radiance field) have nothing the
browser can draw at all. The panel asks the method itself, through
``get_outputs_for_camera``, for what it sees from the browser's current camera, and shows
the channel chosen in the GUI (rgb, depth, alpha, or a method-specific one).

It renders small while the camera moves and at full size once it rests, and it is
throttled by a duty cycle: after a render that took t seconds, the next waits
t (1 / duty_cycle - 1) seconds, so rendering takes at most ``duty_cycle`` of the wall
clock and the rest of the machine stays with training.
"""

import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import viser
from sparse3d.viewer.colors import mapped_colors
from torch import Tensor

from sparse3d.geometry.cameras import Cameras, invert_rigid
from sparse3d.geometry.rotations import rotmats_from_quats

BROWSER = "browser splats"
"""The panel's off position: only what viser draws in the browser."""


@dataclass(frozen=True)
class RenderPanelConfig:
    """How the render panel renders."""

    moving_size: int = 128
    """Long side in pixels of the renders made while the camera moves."""
    resting_size: int = 512
    """Long side in pixels once the camera rests (never above the browser's canvas)."""
    rest_seconds: float = 0.3
    """Time without a camera update after which the camera counts as resting."""
    duty_cycle: float = 0.1
    """Largest share of wall-clock time spent rendering."""


def camera_from_viser(wxyz: np.ndarray, position: np.ndarray, fov_y: float, width: int, height: int) -> Cameras:
    """The pinhole camera of a browser's view.

    Args:
        wxyz: float [4] rotation (w, x, y, z) from camera to world; viser's camera axes
            are OpenCV's (+z forward, +y down), as the library's.
        position: float [3] camera centre, world frame.
        fov_y: vertical field of view in radians.
        width, height: image size in pixels.

    Returns:
        One camera: viewmats [1, 4, 4] world-to-camera, Ks [1, 3, 3] with square pixels
        and the principal point at the image centre.
    """
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = rotmats_from_quats(torch.as_tensor(np.asarray(wxyz), dtype=torch.float64))
    c2w[:3, 3] = torch.as_tensor(np.asarray(position), dtype=torch.float64)
    focal = 0.5 * height / math.tan(0.5 * fov_y)
    K = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    return Cameras(invert_rigid(c2w[None]).float(), K[None], width, height)


def render_size(canvas_width: int, canvas_height: int, long_side: int) -> tuple[int, int]:
    """(width, height) of a render with the canvas's aspect and a long side of
    ``long_side`` pixels, or the canvas's own size when that is smaller."""
    scale = min(1.0, long_side / max(canvas_width, canvas_height))
    return max(1, round(canvas_width * scale)), max(1, round(canvas_height * scale))


def image_channels(outputs: dict[str, Tensor]) -> list[str]:
    """The names of ``outputs`` that are images: float [H, W, 1] or [H, W, 3]."""
    return [k for k, v in outputs.items() if v.is_floating_point() and v.dim() == 3 and v.shape[-1] in (1, 3)]


def channel_image(outputs: dict[str, Tensor], channel: str) -> np.ndarray:
    """uint8 [H, W, 3] picture of one output channel.

    Three channels are shown as colours in [0, 1]; "alpha" as grey levels; any other
    single channel (depth, ...) through the turbo colour map, stretched between its 2nd
    and 98th percentiles over the pixels where it is positive and finite (where it is not,
    e.g. depth where nothing was hit, the pixel is white).
    """
    values = outputs[channel].detach().float().cpu()
    if values.shape[-1] == 3:
        return (values.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    values = values[..., 0]
    if channel == "alpha":
        return (values.clamp(0, 1) * 255).round().to(torch.uint8)[..., None].expand(-1, -1, 3).numpy()
    values = values.numpy()
    return mapped_colors(values, values > 0)


class RenderThrottle:
    """When the next render may start, so that rendering takes at most ``duty_cycle`` of
    the wall clock (times in seconds of ``clock``)."""

    def __init__(self, duty_cycle: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0.0 < duty_cycle <= 1.0:
            raise ValueError(f"render panel duty_cycle must be in (0, 1], got {duty_cycle}")
        self.duty_cycle = duty_cycle
        self.clock = clock
        self.next_start = 0.0

    def wait_seconds(self) -> float:
        """Seconds to wait before the next render may start (0 if it may start now)."""
        return max(0.0, self.next_start - self.clock())

    def rendered(self, started: float, ended: float) -> None:
        """Records a render that ran from ``started`` to ``ended``."""
        self.next_start = ended + (ended - started) * (1.0 / self.duty_cycle - 1.0)


class RenderPanel:
    """The GUI's "render" dropdown and the thread that renders each browser's camera.

    Args:
        server: the viser server whose clients are rendered for.
        config: sizes and throttling.
        lock: held while rendering; the owner holds it while it swaps the scene.
        on_mode: called with True when a server channel is shown and False for the
            browser's own splats (the owner hides its splats while the server renders).
    """

    def __init__(self, server: viser.ViserServer, config: RenderPanelConfig, lock: threading.Lock,
                 on_mode: Callable[[bool], None]) -> None:
        self.server, self.config, self.lock, self.on_mode = server, config, lock, on_mode
        self.scene: Any = None  # a method, or anything with its get_outputs_for_camera
        self.generation = 0  # bumped when the scene changes: every client is rendered again
        self.throttle = RenderThrottle(config.duty_cycle)
        self.renders = 0  # renders sent to the page, counted for tests and tools/bench_viewer.py
        self._done: dict[int, tuple] = {}  # client id -> what its background shows
        self._wake = threading.Condition()
        self._stop = False
        self.dropdown = server.gui.add_dropdown("render", (BROWSER,), initial_value=BROWSER,
                                                hint="what the method itself renders from this camera")
        self.dropdown.on_update(lambda _: self._mode_changed())
        server.on_client_connect(lambda client: client.camera.on_update(lambda _: self._wake_up()))
        self._thread = threading.Thread(target=self._run, name="sparse3d-render-panel", daemon=True)
        self._thread.start()

    @property
    def channel(self) -> str:
        """The dropdown's choice: a channel name, or :data:`BROWSER`."""
        return self.dropdown.value

    def configure(self, config: RenderPanelConfig) -> None:
        """Renders with ``config`` from now on (sizes, rest time, duty cycle)."""
        self.config, self.throttle = config, RenderThrottle(config.duty_cycle)
        self._wake_up()

    def set_scene(self, scene: Any) -> None:
        """Shows ``scene`` from now on: a method, or anything with its
        ``get_outputs_for_camera``; the dropdown offers its image channels (none when it
        cannot be viewed from a camera). Call with ``lock`` held."""
        self.scene = scene
        self.generation += 1
        try:
            with torch.no_grad():
                probe = scene.get_outputs_for_camera(camera_from_viser(np.array([1.0, 0, 0, 0]), np.zeros(3), 1.0, 8, 8))
            channels = image_channels(probe)
        except NotImplementedError:
            channels = []
        self.dropdown.options = (BROWSER, *channels)
        self._mode_changed()

    def stop(self) -> None:
        """Ends the rendering thread."""
        with self._wake:
            self._stop = True
            self._wake.notify()
        self._thread.join()

    def _mode_changed(self) -> None:
        self.on_mode(self.channel != BROWSER)
        self._wake_up()

    def _wake_up(self) -> None:
        with self._wake:
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                # Wake for a change, in time to give a moving camera its full-size render,
                # or when the throttle lets the next render start.
                self._wake.wait(timeout=self.throttle.wait_seconds() or self.config.rest_seconds / 2)
                if self._stop:
                    return
            for client in list(self.server.get_clients().values()):
                if self.throttle.wait_seconds() > 0:
                    break
                self._render_for(client)

    def _render_for(self, client: viser.ClientHandle) -> None:
        """Renders the client's camera if its background does not show it yet."""
        if self.channel == BROWSER:
            if self._done.pop(client.client_id, None) is not None:
                client.scene.set_background_image(None)
            return
        wanted = self._wanted(client)
        if wanted is None:
            return
        pose, size, channel, _ = wanted
        started = time.monotonic()
        with self.lock:
            if self.scene is None:
                return
            with torch.no_grad():
                outputs = self.scene.get_outputs_for_camera(camera_from_viser(*pose, *size))
        if channel in outputs:
            client.scene.set_background_image(channel_image(outputs, channel), format="jpeg", jpeg_quality=90)
            self._done[client.client_id] = wanted
            self.renders += 1
        self.throttle.rendered(started, time.monotonic())  # the picture and its encoding count too

    def _wanted(self, client: viser.ClientHandle) -> tuple | None:
        """(pose, size, channel, generation) of the render the client should see, or None
        when its background already shows it (or the browser has not sent a camera yet)."""
        camera = client.camera
        if camera.update_timestamp == 0.0:
            return None
        moving = time.time() - camera.update_timestamp < self.config.rest_seconds
        size = render_size(camera.image_width, camera.image_height,
                           self.config.moving_size if moving else self.config.resting_size)
        wanted = ((tuple(camera.wxyz), tuple(camera.position), camera.fov), size, self.channel, self.generation)
        return None if self._done.get(client.client_id) == wanted else wanted
