"""COLMAP sparse models (text and binary): cameras, images (world-to-camera poses,
OpenCV axes, quaternion w x y z) and points3D.

Supported camera models: SIMPLE_PINHOLE, PINHOLE, OPENCV. Images are read from
``<root>/images/<NAME>``, masks from ``<root>/masks/<NAME>`` (or ``<stem>.png``) when
that folder exists, depths from ``<root>/depths/<stem>.npy`` when that folder exists.
Views are ordered by image name; every view is a training view (the split files of
:mod:`sparse3d.data.splits` refine that).
"""

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from sparse3d.data.camera_models import (
    CAMERA_MODELS,
    MODEL_NAMES_BY_ID,
    check_model,
    check_poses,
    distortion_or_none,
    intrinsics_from_params,
)
from sparse3d.data.dataset import MultiViewDataset
from sparse3d.data.images import ViewFiles, load_views
from sparse3d.geometry.cameras import Cameras
from sparse3d.geometry.rotations import quats_from_rotmats, rotmats_from_quats
from sparse3d.io.atomic import write_atomic, write_text_atomic

ModelFormat = Literal["auto", "bin", "txt"]


@dataclass(frozen=True)
class ColmapCamera:
    """One entry of cameras.txt / cameras.bin."""

    model: str
    """Camera model name (e.g. "PINHOLE")."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    params: list[float]
    """Model parameters in COLMAP order."""


@dataclass(frozen=True)
class ColmapImage:
    """One entry of images.txt / images.bin (without its 2D points)."""

    qvec: list[float]
    """World-to-camera rotation as a quaternion (w, x, y, z)."""
    tvec: list[float]
    """World-to-camera translation (x, y, z)."""
    camera_id: int
    """Key into the cameras."""
    name: str
    """Image file name relative to the images folder."""


def find_model_dir(root: Path) -> Path:
    """The folder holding cameras.{txt,bin}: ``root/sparse/0``, ``root/sparse`` or ``root``."""
    root = Path(root)
    for candidate in (root / "sparse" / "0", root / "sparse", root):
        if any((candidate / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
            return candidate
    raise FileNotFoundError(f"COLMAP data set {root}: no cameras.bin or cameras.txt in sparse/0, sparse or the root")


def read_colmap(root: Path, model_format: ModelFormat = "auto") -> MultiViewDataset:
    """Reads a COLMAP data set (model + images + optional masks and depths) under ``root``.

    Args:
        model_format: "bin", "txt", or "auto" (binary when cameras.bin exists).
    """
    root = Path(root)
    model_dir = find_model_dir(root)
    ext = model_format if model_format != "auto" else ("bin" if (model_dir / "cameras.bin").is_file() else "txt")
    reader = _BinaryReader if ext == "bin" else _TextReader
    cameras = reader.cameras(model_dir / f"cameras.{ext}")
    images = sorted(reader.images(model_dir / f"images.{ext}"), key=lambda im: im.name)
    points_path = model_dir / f"points3D.{ext}"
    points, colors = reader.points(points_path) if points_path.is_file() else (None, None)
    if not images:
        raise ValueError(f"{model_dir / f'images.{ext}'}: no registered images")
    images_where = str(model_dir / f"images.{ext}")
    viewmats, Ks, dists, sizes = [], [], [], set()
    for image in images:
        if image.camera_id not in cameras:
            raise ValueError(
                f"{images_where}: image {image.name!r} uses camera {image.camera_id}, not in cameras.{ext}"
            )
        cam = cameras[image.camera_id]
        K, dist = intrinsics_from_params(
            cam.model, cam.params, f"{model_dir / f'cameras.{ext}'}: camera {image.camera_id}"
        )
        Ks.append(K)
        dists.append(dist)
        sizes.add((cam.width, cam.height))
        viewmats.append(_viewmat(image, f"{images_where}: image {image.name!r}"))
    if len(sizes) != 1:
        raise ValueError(f"{model_dir / f'cameras.{ext}'}: all images must share one size, got {sorted(sizes)}")
    width, height = sizes.pop()
    names = [im.name for im in images]
    viewmats = torch.stack(viewmats)
    check_poses(viewmats, names, images_where)
    views = [_view_files(root, name, images_where) for name in names]
    loaded = load_views(views, width, height)
    cams = Cameras(viewmats.float(), torch.stack(Ks).float(), width, height, distortion_or_none(torch.stack(dists)))
    return MultiViewDataset(
        cams,
        loaded.images,
        names,
        torch.arange(len(names)),
        torch.zeros(0, dtype=torch.int64),
        loaded.masks,
        loaded.depths,
        points,
        colors,
        alphas=loaded.alphas,
        source=f"{root} (colmap {ext})",
    )


def write_colmap(data: MultiViewDataset, root: Path, binary: bool) -> Path:
    """Writes ``root/sparse/0/{cameras,images,points3D}.{bin|txt}`` for ``data`` (one
    camera per distinct intrinsics; PINHOLE, or OPENCV with distortion; no 2D points).
    Image files are not written (see :func:`sparse3d.data.images.write_view_files`).

    Returns:
        The model folder.
    """
    model_dir = Path(root) / "sparse" / "0"
    cams = data.cameras
    model = "OPENCV" if cams.distortion is not None else "PINHOLE"
    camera_ids: dict[tuple[float, ...], int] = {}
    cameras: dict[int, ColmapCamera] = {}
    images: list[ColmapImage] = []
    quats = quats_from_rotmats(cams.viewmats[:, :3, :3].to(torch.float64))
    for i, name in enumerate(data.image_names):
        K = cams.Ks[i].to(torch.float64)
        params = [float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])]
        if model == "OPENCV":
            params += cams.distortion[i].to(torch.float64).tolist()
        cam_id = camera_ids.setdefault(tuple(params), len(camera_ids) + 1)
        cameras[cam_id] = ColmapCamera(model, cams.width, cams.height, params)
        tvec = cams.viewmats[i, :3, 3].to(torch.float64).tolist()
        images.append(ColmapImage(quats[i].tolist(), tvec, cam_id, name))
    points = data.points if data.points is not None else torch.zeros(0, 3)
    colors = (
        data.point_colors if data.point_colors is not None else torch.full((len(points), 3), 128, dtype=torch.uint8)
    )
    if binary:
        for name, data in (
            ("cameras", _cameras_bin(cameras)),
            ("images", _images_bin(images)),
            ("points3D", _points_bin(points, colors)),
        ):
            write_atomic(model_dir / f"{name}.bin", lambda tmp, data=data: tmp.write_bytes(data))
    else:
        write_text_atomic(model_dir / "cameras.txt", _cameras_txt(cameras))
        write_text_atomic(model_dir / "images.txt", _images_txt(images))
        write_text_atomic(model_dir / "points3D.txt", _points_txt(points, colors))
    return model_dir


def _viewmat(image: ColmapImage, where: str) -> Tensor:
    q = torch.tensor(image.qvec, dtype=torch.float64)
    t = torch.tensor(image.tvec, dtype=torch.float64)
    if not (torch.isfinite(q).all() and torch.isfinite(t).all()) or q.norm() == 0:
        raise ValueError(f"{where}: the pose is not finite (qvec {image.qvec}, tvec {image.tvec})")
    mat = torch.eye(4, dtype=torch.float64)
    mat[:3, :3], mat[:3, 3] = rotmats_from_quats(q), t
    return mat


def _view_files(root: Path, name: str, where: str) -> ViewFiles:
    mask = None
    if (root / "masks").is_dir():
        mask = root / "masks" / name
        if not mask.is_file():
            mask = root / "masks" / f"{Path(name).stem}.png"
    depth = root / "depths" / f"{Path(name).stem}.npy" if (root / "depths").is_dir() else None
    return ViewFiles(root / "images" / name, mask, depth, f"{where}: image {name!r}")


class _TextReader:
    """Parsers of the COLMAP text model files."""

    @staticmethod
    def cameras(path: Path) -> dict[int, ColmapCamera]:
        out = {}
        for lineno, fields in _data_lines(path):
            where = f"{path}:{lineno}"
            if len(fields) < 4:
                raise ValueError(f"{where}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS[], got {' '.join(fields)!r}")
            check_model(fields[1], f"{where} (camera {fields[0]})")
            cam_id, width, height = _ints(fields[0], fields[2], fields[3], where=where)
            out[cam_id] = ColmapCamera(fields[1], width, height, _floats(fields[4:], where))
        return out

    @staticmethod
    def images(path: Path) -> list[ColmapImage]:
        if not path.is_file():
            raise FileNotFoundError(f"COLMAP model file not found: {path}")
        out = []
        expect_points = False  # every image line is followed by its (possibly empty) 2D points line
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.startswith("#"):
                continue
            if expect_points:
                expect_points = False
                continue
            fields = line.split()
            if not fields:
                continue
            where = f"{path}:{lineno}"
            if len(fields) < 10:
                raise ValueError(f"{where}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, got {line!r}")
            (camera_id,) = _ints(fields[8], where=where)
            values = _floats(fields[1:8], where)
            out.append(ColmapImage(values[:4], values[4:], camera_id, " ".join(fields[9:])))
            expect_points = True
        return out

    @staticmethod
    def points(path: Path) -> tuple[Tensor, Tensor]:
        xyz, rgb = [], []
        for lineno, fields in _data_lines(path):
            where = f"{path}:{lineno}"
            if len(fields) < 8:
                raise ValueError(f"{where}: expected POINT3D_ID X Y Z R G B ERROR TRACK[], got {' '.join(fields)!r}")
            xyz.append(_floats(fields[1:4], where))
            rgb.append(_ints(*fields[4:7], where=where, minimum=0))
        return _points_tensors(xyz, rgb, path)


class _BinaryReader:
    """Parsers of the COLMAP binary model files (little-endian)."""

    @staticmethod
    def cameras(path: Path) -> dict[int, ColmapCamera]:
        buf = _Buffer(path)
        out = {}
        for _ in range(buf.unpack("<Q")[0]):
            cam_id, model_id, width, height = buf.unpack("<iiQQ")
            if model_id not in MODEL_NAMES_BY_ID:
                raise ValueError(
                    f"{path}: camera {cam_id} has unsupported camera model id {model_id}; "
                    f"supported: {', '.join(f'{n} ({i})' for n, (i, _) in CAMERA_MODELS.items())}"
                )
            model = MODEL_NAMES_BY_ID[model_id]
            n_params = len(CAMERA_MODELS[model][1])
            out[cam_id] = ColmapCamera(model, width, height, list(buf.unpack(f"<{n_params}d")))
        return out

    @staticmethod
    def images(path: Path) -> list[ColmapImage]:
        buf = _Buffer(path)
        out = []
        for _ in range(buf.unpack("<Q")[0]):
            values = buf.unpack("<i7di")
            name = buf.cstring()
            (n_points,) = buf.unpack("<Q")
            buf.skip(24 * n_points)  # (x, y, point3D_id) per 2D point
            out.append(ColmapImage(list(values[1:5]), list(values[5:8]), values[8], name))
        return out

    @staticmethod
    def points(path: Path) -> tuple[Tensor, Tensor]:
        buf = _Buffer(path)
        xyz, rgb = [], []
        for _ in range(buf.unpack("<Q")[0]):
            values = buf.unpack("<Q3d3BdQ")
            xyz.append(values[1:4])
            rgb.append(values[4:7])
            buf.skip(8 * values[8])  # (image_id, point2D_idx) per track element
        return _points_tensors(xyz, rgb, path)


class _Buffer:
    """A cursor over a binary file whose reads past the end raise a clear error."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise FileNotFoundError(f"COLMAP model file not found: {path}")
        self.path, self.data, self.pos = path, path.read_bytes(), 0

    def unpack(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError(f"{self.path}: truncated file (needed {size} bytes at offset {self.pos})")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def cstring(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise ValueError(f"{self.path}: truncated file (unterminated image name at offset {self.pos})")
        text = self.data[self.pos : end].decode("utf-8")
        self.pos = end + 1
        return text

    def skip(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise ValueError(f"{self.path}: truncated file (needed {n} bytes at offset {self.pos})")
        self.pos += n


def _data_lines(path: Path):
    """(line number, whitespace-split fields) of the non-empty, non-comment lines."""
    if not path.is_file():
        raise FileNotFoundError(f"COLMAP model file not found: {path}")
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            yield lineno, line.split()


def _ints(*fields: str, where: str, minimum: int = 1) -> list[int]:
    try:
        values = [int(f) for f in fields]
    except ValueError as err:
        raise ValueError(f"{where}: expected integers, got {list(fields)}") from err
    if any(v < minimum for v in values):
        raise ValueError(f"{where}: expected integers >= {minimum}, got {values}")
    return values


def _floats(fields: list[str], where: str) -> list[float]:
    try:
        return [float(f) for f in fields]
    except ValueError as err:
        raise ValueError(f"{where}: expected numbers, got {fields}") from err


def _points_tensors(xyz: list, rgb: list, path: Path) -> tuple[Tensor, Tensor]:
    points = torch.tensor(xyz, dtype=torch.float64).reshape(-1, 3)
    colors = torch.tensor(rgb, dtype=torch.int64).reshape(-1, 3)
    if not torch.isfinite(points).all():
        raise ValueError(f"{path}: points have non-finite coordinates")
    if colors.numel() and colors.max() > 255:
        raise ValueError(f"{path}: point colours must be 0-255")
    return points.to(torch.float32), colors.to(torch.uint8)


def _cameras_txt(cameras: dict[int, ColmapCamera]) -> str:
    lines = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    for cam_id, cam in cameras.items():
        lines.append(" ".join([str(cam_id), cam.model, str(cam.width), str(cam.height), *map(repr, cam.params)]))
    return "\n".join(lines) + "\n"


def _images_txt(images: list[ColmapImage]) -> str:
    lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)",
    ]
    for image_id, im in enumerate(images, 1):
        lines.append(" ".join([str(image_id), *map(repr, im.qvec + im.tvec), str(im.camera_id), im.name]))
        lines.append("")
    return "\n".join(lines) + "\n"


def _points_txt(points: Tensor, colors: Tensor) -> str:
    lines = ["# 3D point list with one line of data per point:", "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[]"]
    for i, (p, c) in enumerate(zip(points.to(torch.float64).tolist(), colors.tolist()), 1):
        lines.append(" ".join([str(i), *map(repr, p), *map(str, c), "0.0"]))
    return "\n".join(lines) + "\n"


def _cameras_bin(cameras: dict[int, ColmapCamera]) -> bytes:
    out = [struct.pack("<Q", len(cameras))]
    for cam_id, cam in cameras.items():
        out.append(struct.pack("<iiQQ", cam_id, CAMERA_MODELS[cam.model][0], cam.width, cam.height))
        out.append(struct.pack(f"<{len(cam.params)}d", *cam.params))
    return b"".join(out)


def _images_bin(images: list[ColmapImage]) -> bytes:
    out = [struct.pack("<Q", len(images))]
    for image_id, im in enumerate(images, 1):
        out.append(struct.pack("<i7di", image_id, *im.qvec, *im.tvec, im.camera_id))
        out.append(im.name.encode("utf-8") + b"\0" + struct.pack("<Q", 0))
    return b"".join(out)


def _points_bin(points: Tensor, colors: Tensor) -> bytes:
    out = [struct.pack("<Q", len(points))]
    for i, (p, c) in enumerate(zip(points.to(torch.float64).tolist(), colors.tolist()), 1):
        out.append(struct.pack("<Q3d3BdQ", i, *p, *c, 0.0, 0))
    return b"".join(out)
