"""An orbit around the object: N views on the novel-view ellipse through the input cameras
(:mod:`sparse3d.reconstruction.novel_views`), written as an image grid (PNG) and, when
imageio-ffmpeg is installed (the optional extra ``video``, which ships an ffmpeg binary),
an MP4.

The views start at input camera 0's angle on the ellipse and go once round at equal
steps of the ellipse parameter, looking at the rig's focus point with the rig's up, with
the first input camera's intrinsics and the inputs' image size.
"""

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from sparse3d.data.images import write_png
from sparse3d.engine.config import at_least, check_ranges
from sparse3d.geometry.cameras import Cameras
from sparse3d.io.atomic import write_atomic
from sparse3d.reconstruction.novel_views import novel_view_rig, rig_cameras
from sparse3d.reconstruction.views import CameraRenderer, render_views

VIDEO_HINT = "pip install 'sparse3d[video]'"
STRIP_NAME = "orbit.png"
VIDEO_NAME = "orbit.mp4"


@dataclass
class OrbitConfig:
    """How many orbit frames, and how they are laid out and played."""

    frames: int = field(default=24, metadata=at_least(1))
    """Views once round the ellipse, at equal steps."""
    columns: int | None = field(default=None, metadata=at_least(1))
    """Frames per row of orbit.png; None: ceil(sqrt(frames)), a near-square grid."""
    fps: int = field(default=12, metadata=at_least(1))
    """Frames per second of orbit.mp4."""

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True)
class OrbitFiles:
    """What :func:`write_orbit` wrote."""

    strip: Path
    """The image grid (orbit.png)."""
    video: Path | None
    """The video (orbit.mp4), or None when it was skipped."""
    skipped: str | None
    """Why the video was skipped (one line naming what to install), or None."""


def orbit_cameras(inputs: Cameras, frames: int) -> Cameras:
    """``frames`` cameras once round the ellipse through ``inputs`` (module docstring).

    Args:
        inputs: T >= 2 cameras around the object, e.g. the training views.
        frames: N.

    Returns:
        N cameras, float32.

    Raises:
        ValueError: as :func:`~sparse3d.reconstruction.novel_views.novel_view_rig`.
    """
    rig = novel_view_rig(inputs)
    angles = rig.thetas[0] + 2 * math.pi * torch.arange(frames, dtype=torch.float64) / frames  # [N]
    return rig_cameras(rig, angles, inputs.width, inputs.height, inputs.Ks[0])


def image_grid(images: Tensor, columns: int) -> Tensor:
    """Lays ``images`` uint8 [N, H, W, 3] out row by row, ``columns`` per row, white where
    the last row is short: uint8 [rows x H, columns x W, 3], rows = ceil(N / columns)."""
    count, height, width, channels = images.shape
    rows = math.ceil(count / columns)
    grid = torch.full((rows * columns, height, width, channels), 255, dtype=torch.uint8)
    grid[:count] = images
    return grid.view(rows, columns, height, width, channels).permute(0, 2, 1, 3, 4).reshape(
        rows * height, columns * width, channels)


def video_unavailable() -> str | None:
    """Why an MP4 cannot be written here (one line naming the extra), or None when it can."""
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        return f"imageio-ffmpeg is not installed ({VIDEO_HINT})"
    return None


def write_mp4(path: Path, frames: Tensor, fps: int) -> None:
    """Writes uint8 [N, H, W, 3] ``frames`` as an H.264 MP4 (yuv420p, which every player
    reads) with the ffmpeg that imageio-ffmpeg ships, atomically. Odd sizes are padded
    with the edge pixels to even ones, as 4:2:0 chroma needs.

    Raises:
        ImportError: imageio-ffmpeg is missing (see :func:`video_unavailable`).
        OSError: ffmpeg failed (its message).
    """
    import imageio_ffmpeg

    array = frames.numpy()
    array = np.pad(array, ((0, 0), (0, array.shape[1] % 2), (0, array.shape[2] % 2), (0, 0)), mode="edge")

    def write(tmp: Path) -> None:
        # The temporary file ends in .tmp, so the container is named rather than guessed.
        writer = imageio_ffmpeg.write_frames(str(tmp), (array.shape[2], array.shape[1]), fps=fps, codec="libx264",
                                             pix_fmt_out="yuv420p", macro_block_size=1, output_params=["-f", "mp4"])
        writer.send(None)  # starts ffmpeg
        for frame in array:
            writer.send(np.ascontiguousarray(frame))
        writer.close()

    write_atomic(Path(path), write)


def write_orbit(renderer: CameraRenderer, inputs: Cameras, out_dir: Path,
                config: OrbitConfig | None = None, progress: bool = False) -> OrbitFiles:
    """Renders the orbit around ``inputs`` and writes OUT_DIR/orbit.png and, when it can,
    OUT_DIR/orbit.mp4.

    Args:
        renderer: a trained method, or anything with ``get_outputs_for_camera`` ("rgb").
        inputs: T >= 2 cameras around the object, e.g. the training views (any device).
        out_dir: folder to write into (created if missing).
        config: frame count and layout; None: the defaults.
        progress: show a progress bar while rendering (for the command line).

    Returns:
        The files written, and why the video was skipped if it was.

    Raises:
        ValueError: the cameras span no ellipse, or the renderer returns no "rgb"/"alpha".
    """
    config = config or OrbitConfig()
    cameras = orbit_cameras(inputs.to("cpu"), config.frames)
    views = render_views(renderer, cameras, with_depth=False, progress=progress)
    frames = (views.rgbs * 255).round().to(torch.uint8)  # [N, H, W, 3]
    columns = config.columns or math.ceil(math.sqrt(config.frames))
    strip = Path(out_dir) / STRIP_NAME
    write_png(strip, image_grid(frames, min(columns, config.frames)).numpy())
    skipped = video_unavailable()
    video = None if skipped else Path(out_dir) / VIDEO_NAME
    if video is not None:
        write_mp4(video, frames, config.fps)
    return OrbitFiles(strip=strip, video=video, skipped=skipped)
