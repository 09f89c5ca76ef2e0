"""Loading and writing the per-view files (RGB, masks, depths) that the formats share.

Image files go through Pillow: it reads PNG, JPEG and the other formats it knows, and
writes PNG at a fixed zlib level, so the same array always gives the same bytes.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from sparse3d.io.atomic import write_atomic

# Array channels -> Pillow mode of an 8-bit image.
_MODES_8BIT = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
# zlib level of written PNGs: pinned so that output bytes never depend on Pillow's default.
_PNG_COMPRESS_LEVEL = 6


@dataclass(frozen=True)
class ViewFiles:
    """Where one view's files are, and which metadata file named them (for messages)."""

    image: Path
    """RGB or RGBA image (RGBA is composited over white by :func:`rgb_over_white_and_mask`;
    its alpha is kept, and becomes the mask unless ``mask`` is given)."""
    mask: Path | None
    """Single-channel mask image (> 50 % of full scale = object), or None."""
    depth: Path | None
    """.npy float [H, W] camera z, or a 16-bit PNG in millimetres, or None."""
    named_in: str
    """The metadata file and field that referenced these files."""


@dataclass(frozen=True)
class LoadedViews:
    """Stacked contents of a list of :class:`ViewFiles`."""

    images: Tensor
    """uint8 [N, H, W, 3]."""
    masks: Tensor | None
    """bool [N, H, W], or None when no view has a mask (from a file or from alpha)."""
    depths: Tensor | None
    """float32 [N, H, W], or None when no view has a depth file."""
    alphas: Tensor | None
    """uint8 [N, H, W] image alpha (255 = opaque), or None when no image has alpha; views
    whose image has none count as opaque."""


# np.load parses the .npy header with ast.literal_eval, and CPython 3.11's AST constructor
# is not thread-safe (it raises "AST constructor recursion depth mismatch" when two threads
# parse at once; python/cpython#106905), so the depth files are read one at a time.
_NPY_LOCK = threading.Lock()


def load_views(views: list[ViewFiles], width: int, height: int) -> LoadedViews:
    """Reads every view and checks each file's size against the cameras' W x H.

    Raises:
        FileNotFoundError: a referenced file does not exist (the message names it and
            the metadata that referenced it).
        ValueError: a size mismatch, an unreadable file, or masks/depths given for only
            some of the views.
    """
    # Pillow's decoders release the GIL, so threads decode in parallel; map() keeps the view
    # order, and re-raises the first failing view's error in that order.
    with ThreadPoolExecutor(max_workers=min(len(views), os.cpu_count() or 1) or 1) as pool:
        loaded = list(pool.map(lambda view: _read_view(view, width, height), views))
    images, masks, depths, alphas = (list(column) for column in zip(*loaded)) if loaded else ([], [], [], [])
    return LoadedViews(
        images=torch.from_numpy(np.stack(images)) if images else torch.zeros(0, height, width, 3, dtype=torch.uint8),
        masks=_stack_optional(masks, "masks", views),
        depths=_stack_optional(depths, "depths", views),
        alphas=_stack_alphas(alphas, width, height),
    )


def rgb_over_white_and_mask(rgba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Composites straight (non-premultiplied) RGBA over a white background.

    Every reader and the synthetic generator go through this one function, so a writer can
    pick straight colours that read back to the exact same RGB (:func:`straight_rgb_under`).

    Args:
        rgba: uint8 [..., 4] straight colour and alpha (255 = opaque).

    Returns:
        rgb: uint8 [..., 3], ``c * a + 255 * (1 - a)`` with ``a = alpha / 255``, rounded to
            the nearest integer (computed exactly in integers: ties cannot occur as 255 is
            odd), and mask: bool [...], alpha > 50 % (alpha >= 128).
    """
    if rgba.dtype != np.uint8 or rgba.ndim < 1 or rgba.shape[-1] != 4:
        raise ValueError(f"rgb_over_white_and_mask: expected uint8 [..., 4] RGBA, got {rgba.dtype} {list(rgba.shape)}")
    colour = rgba[..., :3].astype(np.int32)
    alpha = rgba[..., 3:].astype(np.int32)
    over_white = (colour * alpha + 255 * (255 - alpha) + 127) // 255
    return over_white.astype(np.uint8), rgba[..., 3] > 127


def straight_rgb_under(images: np.ndarray, alphas: np.ndarray, what: str) -> np.ndarray:
    """The straight colours that :func:`rgb_over_white_and_mask` turns back into ``images``
    under ``alphas``, exactly.

    Compositing maps straight colour ``c`` to ``round(c a + 255 (1 - a))``, ``a = alpha / 255``,
    a non-decreasing step function of ``c`` with slope ``a <= 1``; so wherever some uint8
    ``c`` reproduces the image, the inverse ``(image - 255 (1 - a)) / a``, rounded and
    clamped to 0-255, does too, up to floating-point error, which the neighbours +-1 cover.
    Where alpha is 0 every ``c`` composites to white; 255 is written there.

    Args:
        images: uint8 [..., 3] RGB over white.
        alphas: uint8 [...] coverage (255 = opaque).
        what: names the images in the error message.

    Returns:
        uint8 [..., 3] straight RGB.

    Raises:
        ValueError: some pixel has no such colour (e.g. a non-white pixel under alpha 0):
            the images and alphas disagree.
    """
    if images.dtype != np.uint8 or alphas.dtype != np.uint8 or images.shape != alphas.shape + (3,):
        raise ValueError(
            f"{what}: expected uint8 images [..., 3] and uint8 alphas [...] of the same size, got images "
            f"{images.dtype} {list(images.shape)} and alphas {alphas.dtype} {list(alphas.shape)}"
        )
    a = alphas[..., None].astype(np.float64) / 255.0  # [..., 1]
    guess = np.round((images - 255.0 * (1.0 - a)) / np.maximum(a, 1.0 / 255.0))
    chosen = np.full(images.shape, -1, np.int32)
    for offset in (0, -1, 1):
        candidate = np.clip(guess + offset, 0, 255).astype(np.uint8)
        rgba = np.concatenate([candidate, np.broadcast_to(alphas[..., None], candidate.shape[:-1] + (1,))], -1)
        hit = (rgb_over_white_and_mask(rgba)[0] == images) & (chosen < 0)
        chosen[hit] = candidate[hit]
    if (chosen < 0).any():
        bad = np.argwhere((chosen < 0).any(-1))[0]
        raise ValueError(
            f"{what}: pixel {tuple(bad.tolist())} with RGB {images[tuple(bad)].tolist()} cannot come from alpha "
            f"{int(alphas[tuple(bad)])} over white: the images and alphas disagree"
        )
    return np.where(alphas[..., None] == 0, 255, chosen).astype(np.uint8)


def view_names(images: list[Path], root: Path) -> list[str]:
    """The views' names: their file names, or their paths relative to ``root`` when file
    names repeat (e.g. ``train/r_0.png`` and ``test/r_0.png``)."""
    names = [p.name for p in images]
    if len(set(names)) == len(names):
        return names
    return [p.relative_to(root).as_posix() if p.is_relative_to(root) else p.as_posix() for p in images]


def write_view_files(root: Path, names: list[str], images: Tensor, masks: Tensor | None, depths: Tensor | None) -> None:
    """Writes ``images/<name>`` (RGB PNG), ``masks/<name>`` (8-bit PNG, 255 = object) and
    ``depths/<stem>.npy`` (float32) under ``root``: the layout the nerfstudio and COLMAP
    writers reference.

    Args:
        names: N file names ending in .png.
        images: uint8 [N, H, W, 3]; masks: bool [N, H, W] or None; depths: float32 [N, H, W] or None.
    """
    for i, name in enumerate(names):
        write_png(root / "images" / name, images[i].numpy())
        if masks is not None:
            write_png(root / "masks" / name, masks[i].numpy().astype(np.uint8) * 255)
        if depths is not None:
            write_atomic(root / "depths" / f"{Path(name).stem}.npy", lambda tmp, d=depths[i].numpy(): _save_npy(tmp, d))


def write_png(path: Path, image: np.ndarray) -> None:
    """Writes ``image`` atomically as a PNG; the same array always gives the same bytes.

    Args:
        path: destination file.
        image: uint8 [H, W] or [H, W, C] (C = 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA), or
            uint16 [H, W] or [H, W, 1] (16-bit grey, e.g. depth in millimetres).
    """
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in _MODES_8BIT or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_png({path}): expected uint8/uint16 [H, W, 1-4], got {image.dtype} {image.shape}")
    if image.dtype == np.uint16 and image.shape[2] != 1:
        raise ValueError(f"write_png({path}): 16-bit images must be single-channel, got {image.shape}")
    # A little-endian uint16 [H, W] becomes Pillow's "I;16", which its PNG encoder stores at
    # bit depth 16; uint8 [H, W] / [H, W, 2-4] become "L" / "LA", "RGB", "RGBA".
    pixels = image[:, :, 0] if image.shape[2] == 1 else image
    pil = Image.fromarray(np.ascontiguousarray(pixels, pixels.dtype.newbyteorder("<")))
    write_atomic(
        Path(path), lambda tmp: pil.save(tmp, format="PNG", optimize=False, compress_level=_PNG_COMPRESS_LEVEL)
    )


def read_image(path: Path) -> np.ndarray:
    """Reads any image file Pillow reads (PNG, JPEG, ...).

    Palette images are expanded to RGB (RGBA when they carry transparency), bilevel ones
    to 8-bit grey, other colour spaces (CMYK, YCbCr, ...) converted to RGB.

    Returns:
        uint8 [H, W, C] with C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA), or
        uint16 [H, W, 1] for 16-bit grey.

    Raises:
        FileNotFoundError, or ValueError naming the file when it is not a readable image
        or holds samples that fit neither 8 nor 16 bits (float or 32-bit images).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as pil:
            pil.load()
            array = _pil_to_array(pil, path)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        # Pillow reports truncated or corrupt data as OSError, a bad PNG chunk as SyntaxError.
        raise ValueError(f"{path}: not a readable image ({err})") from err
    return array[:, :, None] if array.ndim == 2 else array


def _pil_to_array(pil: Image.Image, path: Path) -> np.ndarray:
    """uint8 [H, W] or [H, W, C] for 8-bit modes, uint16 [H, W] for 16-bit grey."""
    if pil.mode in _MODES_8BIT.values():
        return np.asarray(pil)
    if pil.mode.startswith("I;16"):  # I;16, I;16B, I;16L: 16-bit grey in either byte order
        return np.asarray(pil).astype(np.uint16)
    if pil.mode == "I":  # 32-bit integer; 16-bit PNGs open this way in older Pillow versions
        array = np.asarray(pil)
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ValueError(f"{path}: 32-bit integer image with values outside 0-65535; expected 8 or 16 bits")
        return array.astype(np.uint16)
    if pil.mode == "1":
        return np.asarray(pil.convert("L"))
    if pil.mode == "F" or pil.mode.startswith("I;32"):
        raise ValueError(f"{path}: image mode {pil.mode!r} (float or 32-bit samples); expected 8 or 16 bits")
    # Palette, premultiplied and other colour spaces (CMYK, YCbCr, LAB, ...).
    has_alpha = pil.mode in ("PA", "La", "RGBa") or "transparency" in pil.info
    return np.asarray(pil.convert("RGBA" if has_alpha else "RGB"))


def _read_view(view: ViewFiles, width: int, height: int):
    """(uint8 [H, W, 3] RGB over white, bool [H, W] mask or None, float32 [H, W] depth or
    None, uint8 [H, W] alpha or None)."""
    rgb, alpha_mask, alpha = _read_rgb(view, width, height)
    mask = _read_mask(view, width, height) if view.mask is not None else alpha_mask
    depth = _read_depth(view, width, height) if view.depth is not None else None
    return rgb, mask, depth, alpha


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append ".npy" to a path
        np.save(f, array, allow_pickle=False)


def _read_rgb(view: ViewFiles, width: int, height: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """uint8 [H, W, 3] RGB over white, bool [H, W] alpha > 50 % and uint8 [H, W] alpha (both
    None without alpha)."""
    if not view.image.is_file():
        raise FileNotFoundError(f"{view.named_in}: image file not found: {view.image}")
    img = _to_uint8(read_image(view.image), view.image)
    _check_size(img, width, height, view.image, view.named_in)
    if img.shape[2] in (1, 2):
        img = np.concatenate([np.repeat(img[:, :, :1], 3, axis=2), img[:, :, 1:]], axis=2)
    if img.shape[2] == 3:
        return img, None, None
    rgb, mask = rgb_over_white_and_mask(img)
    return rgb, mask, img[:, :, 3]


def _read_mask(view: ViewFiles, width: int, height: int) -> np.ndarray:
    if not view.mask.is_file():
        raise FileNotFoundError(f"{view.named_in}: mask file not found: {view.mask} (for image {view.image.name})")
    mask = read_image(view.mask)
    _check_size(mask, width, height, view.mask, view.named_in)
    full = 255 if mask.dtype == np.uint8 else 65535
    return mask[:, :, 0] > full // 2


def _read_depth(view: ViewFiles, width: int, height: int) -> np.ndarray:
    if not view.depth.is_file():
        raise FileNotFoundError(f"{view.named_in}: depth file not found: {view.depth}")
    if view.depth.suffix == ".npy":
        with _NPY_LOCK:
            depth = np.load(view.depth, allow_pickle=False)
    else:
        raw = read_image(view.depth)
        if raw.dtype != np.uint16 or raw.shape[2] != 1:
            raise ValueError(
                f"{view.depth}: a depth PNG must be 16-bit single-channel (millimetres), got {raw.dtype} {raw.shape}"
            )
        depth = raw[:, :, 0].astype(np.float32) / 1000.0
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2:
        raise ValueError(f"{view.depth}: depth must be [H, W], got shape {depth.shape}")
    _check_size(depth, width, height, view.depth, view.named_in)
    if not np.isfinite(depth).all():
        raise ValueError(f"{view.depth}: depth has non-finite values")
    return depth.astype(np.float32)


def _to_uint8(img: np.ndarray, path: Path) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return np.round(img.astype(np.float32) / 257.0).astype(np.uint8)
    raise ValueError(f"{path}: expected an 8- or 16-bit image, got {img.dtype}")


def _check_size(array: np.ndarray, width: int, height: int, path: Path, named_in: str) -> None:
    if array.shape[:2] != (height, width):
        raise ValueError(
            f"{path}: size {array.shape[1]}x{array.shape[0]} (WxH) does not match the camera size "
            f"{width}x{height} given in {named_in}"
        )


def _stack_alphas(alphas: list[np.ndarray | None], width: int, height: int) -> Tensor | None:
    """uint8 [N, H, W], or None when no view has alpha; an image without alpha is opaque,
    so data sets that mix RGB and RGBA files still read."""
    if all(a is None for a in alphas):
        return None
    opaque = np.full((height, width), 255, np.uint8)
    return torch.from_numpy(np.stack([opaque if a is None else a for a in alphas]))


def _stack_optional(items: list[np.ndarray | None], what: str, views: list[ViewFiles]) -> Tensor | None:
    present = [x is not None for x in items]
    if not any(present):
        return None
    if not all(present):
        missing = views[present.index(False)]
        raise ValueError(f"{missing.named_in}: {what} exist for some views but not for {missing.image.name}")
    return torch.from_numpy(np.stack(items))
