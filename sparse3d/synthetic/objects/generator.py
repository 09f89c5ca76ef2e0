"""The synthetic multi-view object benchmark ("sparse3d-mini").

Each object is rendered by :mod:`sparse3d.render.mesh_raster` with Lambert shading
under two fixed world-frame lights (view-independent: no specular term for the SH
colours to chase), anti-aliased by supersampling: every pixel is sampled on an S x S
grid (``SyntheticObjectsConfig.supersampling``, odd, so the middle sample is the pixel
centre) and box-filtered. Its coverage (the fraction of covered samples) is the alpha,
its straight colour the mean shaded colour of the covered samples; the RGBA is quantised
to 8 bits and composited over white by
:func:`sparse3d.data.images.rgb_over_white_and_mask`, the function every reader uses. The
mask is alpha > 50 %, the depth the camera z at the pixel centre (exact there, 0 where
the centre ray misses the object): so depth > 0 and the mask differ only on partly
covered silhouette pixels, and there only at corners and features thinner than a pixel
(the sample grid is point-symmetric about the centre, so a straight edge that covers the
centre covers a majority of the samples). Each object is written as one folder holding
every format side by side::

    <object>/images/000.png ...       RGB over white          (nerfstudio, COLMAP)
    <object>/masks/000.png ...        8-bit, 255 = object (alpha > 50 %)
    <object>/depths/000.npy ...       float32 camera z at the pixel centre, 0 = background
    <object>/transforms.json          nerfstudio
    <object>/transforms_{train,test}.json, train/, test/   Blender (RGBA, soft alpha)
    <object>/sparse/0/{cameras,images,points3D}.{txt,bin}  COLMAP (no points)
    <object>/sparse_{4,6,9}.txt, sparse_test.txt           GaussianObject splits

Views 0-8 are the training candidates (the first 4, 6 or 9 form the sparse splits),
the rest are held out. Output is byte-identical for the same config.
"""

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from sparse3d.data.blender import write_blender
from sparse3d.data.colmap import write_colmap
from sparse3d.data.dataset import MultiViewDataset
from sparse3d.data.images import rgb_over_white_and_mask, write_view_files
from sparse3d.data.nerfstudio import write_nerfstudio
from sparse3d.data.splits import write_split_file
from sparse3d.engine.config import at_least, between, check_ranges, positive
from sparse3d.geometry.cameras import Cameras, intrinsics_from_fov, look_at_viewmats
from sparse3d.render.mesh_raster import interpolate_attributes, rasterize_mesh
from sparse3d.synthetic.objects.objects import SyntheticObject, build_object

# Training rig: (azimuth, elevation) in degrees. The first four are the classic sparse
# set (one per quadrant, 15-30 deg up); views 5-6 and 7-9 fill the diagonals.
_TRAIN_RIG = [(0, 20), (90, 25), (180, 15), (270, 30), (45, 40), (225, 10), (135, 35), (315, 20), (0, 65)]
SPARSE_VIEW_COUNTS = (4, 6, 9)
_GOLDEN_ANGLE_DEG = 180.0 * (3.0 - np.sqrt(5.0))
# Two lights fixed in the world (direction to the light, intensity) plus ambient light.
_LIGHTS = [((0.4, -0.6, 0.7), 0.6), ((-0.5, 0.5, -0.2), 0.25)]
_AMBIENT = 0.3


@dataclass
class SyntheticObjectsConfig:
    """What :func:`write_synthetic_objects` renders."""

    objects: tuple[str, ...] = ("sphere", "torus", "capsule", "box")
    """Catalogue names (sparse3d.synthetic.objects.objects): procedural "sphere", "torus",
    "capsule", "box"; with the pyvista package's example files installed (pip install
    --no-deps pyvista is enough) also "pyvista_airplane", "pyvista_ant", "pyvista_nut",
    "pyvista_earth"."""
    resolution: int = field(default=128, metadata=at_least(8))
    """Image width and height in pixels, >= 8 (128 for CI, 256 for benchmarks)."""
    num_test_views: int = field(default=16, metadata=at_least(1))
    """Held-out views on two rings (elevations 10 and 35 degrees), at least 1."""
    fov_deg: float = field(default=40.0, metadata=between(0, 180, closed=False))
    """Horizontal field of view in degrees, in (0, 180)."""
    camera_distance: float = field(default=4.0, metadata=positive())
    """Mean distance from the cameras to the object centre (objects fit the unit sphere)."""
    jitter_deg: float = field(default=10.0, metadata=at_least(0))
    """Uniform random azimuth/elevation jitter (+-) of the training views."""
    num_dense_views: int = field(default=0, metadata=at_least(0))
    """Extra training views for many-view methods (Strivec, TensoRF), after the 9 rig
    views: a golden-angle spiral from 10 degrees below the horizon to 80 above, at the
    camera distance. The sparse splits still take the first rig views."""
    seed: int = field(default=0, metadata=at_least(0))
    """Seed of the jitter (>= 0); the same seed gives byte-identical output."""
    supersampling: int = field(default=3, metadata=at_least(1))
    """Samples per pixel axis S (odd, >= 1): each pixel averages an S x S grid of samples,
    which anti-aliases silhouettes and texture edges; 1 samples the pixel centre only
    (hard 0/255 alpha)."""

    def __post_init__(self) -> None:
        _check_supersampling(self.supersampling, "SyntheticObjectsConfig.supersampling")  # its own message first
        check_ranges(self)


def write_synthetic_objects(out_dir: Path, config: SyntheticObjectsConfig) -> list[Path]:
    """Renders every configured object and writes its folder under ``out_dir``.

    Returns:
        One folder per object, in ``config.objects`` order.
    """
    if config.resolution < 8 or config.num_test_views < 1:
        raise ValueError(f"SyntheticObjectsConfig: need resolution >= 8 and num_test_views >= 1, got {config}")
    if len(set(config.objects)) != len(config.objects) or not config.objects:
        raise ValueError(f"SyntheticObjectsConfig.objects must be distinct names, got {config.objects}")
    _check_supersampling(config.supersampling, "SyntheticObjectsConfig.supersampling")
    objects = [build_object(name) for name in config.objects]  # fail on a bad name before rendering
    cameras = synthetic_cameras(config)
    folders = []
    for obj in tqdm(objects, desc="synthetic objects", unit="object", disable=len(objects) < 2):
        folder = Path(out_dir) / obj.name
        data = render_object(obj, cameras, config.supersampling, len(_TRAIN_RIG) + config.num_dense_views)
        _replace_folder(folder, lambda staging, data=data: write_object_folder(data, staging))
        folders.append(folder)
    return folders


def _replace_folder(folder: Path, write) -> None:
    """Calls ``write(staging)`` on a fresh sibling folder, then swaps it in for ``folder``:
    readers never see a half-written object, and no file of an earlier run is left over."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.new-"))
    try:
        write(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if folder.exists():
        old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old-"))
        os.replace(folder, old / folder.name)
        os.replace(staging, folder)
        shutil.rmtree(old)
    else:
        os.replace(staging, folder)


def synthetic_cameras(config: SyntheticObjectsConfig) -> Cameras:
    """The 9 training-candidate cameras, ``num_dense_views`` more training cameras, then
    ``num_test_views`` held-out ones, looking at the origin with +z up."""
    rng = np.random.default_rng(config.seed)
    angles, distances = [], []
    for azimuth, elevation in _TRAIN_RIG:
        jitter = rng.uniform(-config.jitter_deg, config.jitter_deg, size=2)
        angles.append((azimuth + jitter[0], float(np.clip(elevation + jitter[1] / 2, 5.0, 75.0))))
        distances.append(config.camera_distance + rng.uniform(-0.25, 0.25))
    for k in range(config.num_dense_views):
        # Equal areas of the band: sin(elevation) evenly spaced, azimuth by the golden angle.
        low, high = np.sin(np.radians(-10.0)), np.sin(np.radians(80.0))
        elevation = np.degrees(np.arcsin(low + (high - low) * (k + 0.5) / config.num_dense_views))
        angles.append(((k * _GOLDEN_ANGLE_DEG) % 360.0, float(elevation)))
        distances.append(config.camera_distance)
    n = config.num_test_views
    for k in range(n):
        angles.append((k * 360.0 / n + 180.0 / n, 10.0 if k % 2 == 0 else 35.0))
        distances.append(config.camera_distance)
    az = torch.tensor([a for a, _ in angles], dtype=torch.float64).deg2rad()
    el = torch.tensor([e for _, e in angles], dtype=torch.float64).deg2rad()
    dist = torch.tensor(distances, dtype=torch.float64)
    eyes = torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], -1) * dist[:, None]
    viewmats = look_at_viewmats(eyes, torch.zeros_like(eyes))
    K = intrinsics_from_fov(config.fov_deg, config.resolution, config.resolution)
    return Cameras(viewmats, K.expand(len(angles), 3, 3).clone(), config.resolution, config.resolution)


def render_object(obj: SyntheticObject, cameras: Cameras, supersampling: int, num_train: int = len(_TRAIN_RIG)) -> MultiViewDataset:
    """Renders ``obj`` into every camera with ``supersampling`` samples per pixel axis
    (odd, >= 1); the first ``num_train`` views train (the rig's 9 by default), the rest test.

    Returns:
        A :class:`MultiViewDataset` with images (RGB over white), alphas (coverage),
        masks (alpha > 50 %) and depths (camera z at the pixel centre, 0 = background).
    """
    _check_supersampling(supersampling, "render_object: supersampling")
    views = [
        render_view(obj, cameras.viewmats[i], cameras.Ks[i], cameras.width, cameras.height, supersampling)
        for i in range(len(cameras))
    ]
    rgba = torch.stack([view_rgba for view_rgba, _ in views])  # [N, H, W, 4]
    images, masks = rgb_over_white_and_mask(rgba.numpy())
    return MultiViewDataset(
        cameras=cameras,
        images=torch.from_numpy(images),
        image_names=[f"{i:03d}.png" for i in range(len(cameras))],
        train_indices=torch.arange(num_train),
        test_indices=torch.arange(num_train, len(cameras)),
        masks=torch.from_numpy(masks),
        depths=torch.stack([depth for _, depth in views]),
        alphas=rgba[..., 3].clone(),
        source=f"synthetic object {obj.name}",
    )


def render_view(
    obj: SyntheticObject, viewmat: Tensor, K: Tensor, width: int, height: int, supersampling: int
) -> tuple[Tensor, Tensor]:
    """Renders ``obj`` into one camera, box-filtering an S x S grid of samples per pixel.

    Pixel u covers [u, u + 1), so the samples sit at u + (j + 0.5) / S, j = 0..S-1: the
    centres of the pixels of an (S W) x (S H) image with intrinsics ``K[:2] * S``.

    Args:
        viewmat: float [4, 4] world-to-camera (OpenCV axes); K: float [3, 3] intrinsics.
        width, height: image size W, H.
        supersampling: S, odd (the middle sample is the pixel centre).

    Returns:
        rgba: uint8 [H, W, 4] straight RGB (the mean shaded colour of the covered samples,
            255 where none is) and alpha (covered fraction x 255), both rounded; and
        depth: float32 [H, W] camera z at the pixel centre, 0 where it misses the object.
    """
    s = supersampling
    K_fine = K.to(torch.float64).clone()
    K_fine[:2] *= s
    mesh = obj.mesh
    raster = rasterize_mesh(mesh.verts, mesh.faces, viewmat, K_fine, s * width, s * height)
    covered = raster.mask
    values = interpolate_attributes(raster, mesh.faces, torch.cat([mesh.verts, mesh.normals, mesh.uvs], 1))[covered]
    shaded = torch.zeros(s * height, s * width, 3, dtype=torch.float64)
    shaded[covered] = shade(obj.albedo(values[:, :3], values[:, 6:8]), values[:, 3:6])
    # Sum the S x S samples in a fixed order (elementwise adds, no reduction kernel), so the
    # result cannot depend on how torch splits work across threads.
    colour_sum = torch.zeros(height, width, 3, dtype=torch.float64)
    count = torch.zeros(height, width, dtype=torch.int64)
    for j in range(s):
        for k in range(s):
            colour_sum += shaded[j::s, k::s]
            count += covered[j::s, k::s]
    straight = torch.where(count[..., None] > 0, colour_sum / count.clamp(min=1)[..., None], 1.0)
    # round(count * 255 / S^2) in integers; it has no ties, as S^2 is odd.
    alpha = (2 * 255 * count + s * s) // (2 * s * s)
    rgba = torch.cat([(straight * 255).round(), alpha[..., None].to(torch.float64)], -1).to(torch.uint8)
    return rgba, raster.depth[s // 2 :: s, s // 2 :: s].contiguous()


def _check_supersampling(value: int, field_name: str) -> None:
    """Raises ValueError, naming ``field_name``, unless ``value`` is an odd int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
        raise ValueError(
            f"{field_name} must be an odd integer >= 1 (the middle sample is the pixel centre), got {value!r}"
        )


def shade(albedo: Tensor, normals: Tensor) -> Tensor:
    """Lambert shading of ``albedo`` [P, 3] with interpolated world ``normals`` [P, 3]
    under the fixed lights; float64 [P, 3] in [0, 1]."""
    n = torch.nn.functional.normalize(normals, dim=-1)
    light = torch.full(n.shape[:-1], _AMBIENT, dtype=torch.float64)
    for direction, intensity in _LIGHTS:
        d = torch.nn.functional.normalize(torch.tensor(direction, dtype=torch.float64), dim=0)
        light = light + intensity * (n @ d).clamp(min=0)
    return (albedo * light[:, None]).clamp(0, 1)


def write_object_folder(data: MultiViewDataset, folder: Path) -> None:
    """Writes ``data`` in every format plus the sparse split files under ``folder``: RGB
    over white, masks and depths for nerfstudio and COLMAP, RGBA with ``data.alphas`` for
    Blender (which reads back to the same RGB)."""
    write_view_files(folder, data.image_names, data.images, data.masks, data.depths)
    write_nerfstudio(data, folder)
    write_blender(data, folder)
    write_colmap(data, folder, binary=False)
    write_colmap(data, folder, binary=True)
    for k in SPARSE_VIEW_COUNTS:
        write_split_file(folder / f"sparse_{k}.txt", data.train_indices[:k].tolist())
    write_split_file(folder / "sparse_test.txt", data.test_indices.tolist())
