"""Exports from the browser: a camera path through keyframes taken from the browser's
camera, rendered by the method into a video along a smooth path
(:mod:`sparse3d.geometry.camera_path`), and a screenshot of the page. Both are sent to
the browser as downloads; the video is also written into the run directory."""

import io
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import viser
from PIL import Image
from sparse3d.viewer.render_panel import camera_from_viser, render_size

from sparse3d.geometry.camera_path import interpolate_poses
from sparse3d.geometry.cameras import Cameras, invert_rigid
from sparse3d.geometry.rotations import rotmats_from_quats
from sparse3d.reconstruction.orbit import video_unavailable, write_mp4
from sparse3d.reconstruction.views import render_views

VIDEO_NAME = "camera_path.mp4"
"""The video's file name in the run directory."""
VIDEO_LONG_SIDE = 512
"""Long side of the video's frames, pixels (the aspect is the browser's)."""
KEYFRAME_SCALE = 0.1
"""Depth of a drawn keyframe frustum, world units."""


@dataclass(frozen=True)
class Keyframe:
    """One browser camera: where it was and how it looked."""

    wxyz: tuple[float, float, float, float]
    """Rotation camera -> world (w, x, y, z), OpenCV axes."""
    position: tuple[float, float, float]
    """Camera centre, world frame."""
    fov_y: float
    """Vertical field of view, radians."""
    aspect: float
    """Width / height of the browser's canvas."""


def path_cameras(keyframes: list[Keyframe], frames: int, long_side: int = VIDEO_LONG_SIDE) -> Cameras:
    """``frames`` cameras along the smooth path through ``keyframes``, with the first
    keyframe's field of view and aspect and ``long_side`` pixels on the long side.

    Raises:
        ValueError: fewer than two keyframes, or ``frames`` < 2.
    """
    if len(keyframes) < 2 or frames < 2:
        raise ValueError(f"a camera path needs two keyframes and two frames, got {len(keyframes)} and {frames}")
    c2w = torch.eye(4, dtype=torch.float64).repeat(len(keyframes), 1, 1)
    c2w[:, :3, :3] = rotmats_from_quats(torch.tensor([k.wxyz for k in keyframes], dtype=torch.float64))
    c2w[:, :3, 3] = torch.tensor([k.position for k in keyframes], dtype=torch.float64)
    poses = interpolate_poses(c2w, frames)
    first = keyframes[0]
    width, height = render_size(round(1000 * first.aspect), 1000, long_side)
    template = camera_from_viser(np.array(first.wxyz), np.array(first.position), first.fov_y, width, height)
    return Cameras(invert_rigid(poses).float(), template.Ks.expand(frames, 3, 3), width, height)


def path_frames(scene: Any, cameras: Cameras) -> torch.Tensor:
    """uint8 [N, H, W, 3] what ``scene`` (a method, or anything with its
    ``get_outputs_for_camera``) renders from each camera."""
    return (render_views(scene, cameras, with_depth=False).rgbs * 255).round().to(torch.uint8)


class CameraPathPanel:
    """The GUI's "camera path" folder: add / clear keyframes (drawn as small frusta), the
    frame count and rate, "render video" and "screenshot".

    Args:
        server: the viser server.
        lock: held while rendering (the owner holds it while it swaps the scene).
        scene: returns what renders the video (the method shown), or None when nothing can.
        out_dir: where the video is written besides being downloaded (the run), or None.
    """

    def __init__(self, server: viser.ViserServer, lock: threading.Lock, scene: Callable[[], Any],
                 out_dir: Path | None) -> None:
        self.server, self.lock, self.scene, self.out_dir = server, lock, scene, out_dir
        self.keyframes: list[Keyframe] = []
        with server.gui.add_folder("camera path", expand_by_default=False):
            self.status = server.gui.add_markdown("no keyframe: move the camera, then add one")
            server.gui.add_button("add keyframe").on_click(lambda event: self.add(event.client))
            server.gui.add_button("clear keyframes").on_click(lambda _: self.clear())
            self.frames = server.gui.add_number("frames", 60, min=2, max=3000, step=1)
            self.fps = server.gui.add_number("fps", 24, min=1, max=120, step=1)
            server.gui.add_button("render video").on_click(lambda event: self.render_video(event.client))
            server.gui.add_button("screenshot").on_click(lambda event: self.screenshot(event.client))
        self._nodes: list[viser.SceneNodeHandle] = []

    def add(self, client: viser.ClientHandle) -> Keyframe:
        """Adds the client's current camera as the next keyframe."""
        camera = client.camera
        key = Keyframe(tuple(map(float, camera.wxyz)), tuple(map(float, camera.position)), float(camera.fov),
                       camera.image_width / max(camera.image_height, 1))
        self.keyframes.append(key)
        self._nodes.append(self.server.scene.add_camera_frustum(
            f"/camera_path/{len(self.keyframes) - 1}", fov=key.fov_y, aspect=key.aspect, scale=KEYFRAME_SCALE,
            color=(255, 120, 0), wxyz=key.wxyz, position=key.position))
        self.status.content = f"{len(self.keyframes)} keyframe(s)"
        return key

    def clear(self) -> None:
        """Forgets the keyframes."""
        for node in self._nodes:
            node.remove()
        self.keyframes, self._nodes = [], []
        self.status.content = "no keyframe: move the camera, then add one"

    def render_video(self, client: viser.ClientHandle | None = None) -> Path | None:
        """Renders the path with the method and writes it as an MP4 (into the run
        directory when there is one) and sends it to ``client``; returns the file, or None
        (the reason is in the GUI)."""
        why = video_unavailable()
        if len(self.keyframes) < 2:
            why = "add at least two keyframes first"
        if why is not None:
            self.status.content = f"no video: {why}"
            return None
        cameras = path_cameras(self.keyframes, int(self.frames.value))
        self.status.content = f"rendering {len(cameras)} frames ..."
        with self.lock:
            scene = self.scene()
            if scene is None:
                self.status.content = "no video: nothing to render yet"
                return None
            frames = path_frames(scene, cameras)
        # Without a run directory (a PLY file), the video only goes to the browser.
        folder = self.out_dir if self.out_dir is not None else Path(tempfile.mkdtemp(prefix="sparse3d-view-"))
        path = folder / VIDEO_NAME
        write_mp4(path, frames, int(self.fps.value))
        self.status.content = f"wrote `{path}` ({len(frames)} frames of {cameras.width} x {cameras.height})"
        if client is not None:
            client.send_file_download(VIDEO_NAME, path.read_bytes(), save_immediately=True)
        return path

    def screenshot(self, client: viser.ClientHandle) -> np.ndarray:
        """What the client's page draws now, at its canvas size (uint8 [H, W, 3]), sent
        back to it as a PNG download."""
        camera = client.camera
        image = client.get_render(camera.image_height, camera.image_width, transport_format="png")[..., :3]
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        client.send_file_download(time.strftime("sparse3d-%Y%m%d-%H%M%S.png"), buffer.getvalue(), save_immediately=True)
        return image
