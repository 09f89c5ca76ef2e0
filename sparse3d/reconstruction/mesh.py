"""Triangle meshes from rendered depth: TSDF fusion (Curless & Levoy 1996) with open3d.

Any method that renders depth (``get_outputs_for_camera`` -> "depth") can be meshed:

1. **Views** (:func:`fusion_cameras`): the input cameras, plus rings of views on the
   novel-view ellipse through them (:mod:`sparse3d.reconstruction.novel_views`), one ring
   at each elevation above or below the ellipse's plane. An object-centric capture looks
   at its object from around its equator; a ring at that height alone leaves the top and
   the bottom unseen (a camera at distance d from a ball of radius r sees only the cap
   within arccos(r / d) of its direction), so the default adds rings at +-45 degrees,
   which close the surface over the poles.
2. **Depth masking** (:func:`mask_depths`): a pixel contributes only where the rendered
   alpha is at least ``alpha_threshold`` (0.5 by default). Expected depth is a weighted
   mean over the Gaussians a ray meets, divided by alpha: at a faint pixel (a silhouette
   edge, a semi-transparent floater) it averages a few weak Gaussians and lies off any
   surface. At 0.5 a pixel counts where the object covers more of it than the background
   does, the rule that turns soft coverage into a mask; and open3d skips pixels of depth
   0, so masked pixels neither add surface nor carve space.
3. **Bounds and voxel size** (:func:`scene_bounds`): the box of the masked depth points
   (their 0.1 to 99.9 percentiles per axis, so that a few far floaters neither coarsen
   the grid nor blow up the volume); the voxel edge is the box's longest side over
   ``resolution``, the truncation distance ``trunc_voxels`` voxels.
4. **Fusion** (:func:`fuse_tsdf`): open3d's ``UniformTSDFVolume`` on a cube over that box,
   then marching cubes with colours averaged per voxel. Not ``ScalableTSDFVolume``:
   open3d 0.20 finds the blocks it allocates from the depth image divided by a fixed
   depth scale of 1000 (millimetres to metres) even for float depth, so float depth in
   world units touches blocks near the camera and nothing is integrated (an empty mesh
   even for a plane at z = 2). The dense cube costs about 48 bytes per voxel: 130 MB at
   the default resolution of 128, 1 GB at 256.

Frames: cameras as in :class:`~sparse3d.geometry.cameras.Cameras` (OpenCV world-to-camera,
pixel (u, v) centred at (u + 0.5, v + 0.5)); open3d uses the same axes but centres pixel
(u, v) at (u, v), so its principal point is ours minus half a pixel. open3d and trimesh
are the optional extra ``mesh``; they are imported only when a mesh is made.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from sparse3d.engine.config import at_least, between, check_ranges, positive
from sparse3d.engine.scene import Mesh
from sparse3d.geometry.cameras import Cameras, look_at_viewmats
from sparse3d.io.atomic import write_atomic
from sparse3d.reconstruction.novel_views import novel_view_rig
from sparse3d.reconstruction.views import CameraRenderer, render_views

INSTALL_HINT = "pip install 'sparse3d[mesh]'"
MAX_GRID = 600
"""The most voxels along a side of the TSDF cube (about 10 GB): a guard against a
``voxel_size`` far below the scene's size."""
# Percentiles of the depth points that bound the scene (module docstring, step 3).
_EXTENT_QUANTILES = (0.001, 0.999)
# torch.quantile takes at most 2^24 values; a strided subset of this size bounds the
# scene as well as all points do.
_MAX_EXTENT_POINTS = 1 << 20


class MeshDependencyError(ImportError):
    """open3d or trimesh is not installed (or, for open3d, a system library it needs)."""


@dataclass
class TSDFConfig:
    """How a mesh is fused from rendered depth (module docstring)."""

    resolution: int = field(default=128, metadata=between(8, 512))
    """Voxels along the longest side of the scene's bounding box: sets the voxel size
    (ignored when ``voxel_size`` is given). Memory grows as its cube: ~130 MB at 128."""
    voxel_size: float | None = field(default=None, metadata=positive())
    """Voxel edge in world units; None derives it from ``resolution``."""
    trunc_voxels: float = field(default=4.0, metadata=at_least(1.0))
    """TSDF truncation distance in voxels: larger fills over depth noise, smaller keeps
    thin parts apart."""
    alpha_threshold: float = field(default=0.5, metadata=between(0.0, 1.0, closed=False))
    """Pixels whose rendered alpha is below this get no depth: at faint pixels (silhouette
    edges, floaters) the expected depth lies off any surface."""
    ring_views: int = field(default=16, metadata=at_least(3))
    """Views per ring around the object, added to the input views."""
    elevations: tuple[float, ...] = field(default=(-45.0, 0.0, 45.0), metadata=between(-80.0, 80.0))
    """One ring per entry: views on the input cameras' ellipse turned by this many degrees
    about the focus point towards the up (0 = on the ellipse, > 0 above it); empty: the
    input views alone."""

    def __post_init__(self) -> None:
        check_ranges(self)


def fusion_cameras(inputs: Cameras, ring_views: int, elevations: tuple[float, ...]) -> Cameras:
    """The input cameras followed by rings of views around the object (module docstring).

    Ring views look at the rig's focus point with the rig's up, and share the first input
    camera's intrinsics and the inputs' image size. At elevation e a view on the ellipse
    is turned by e about the focus, towards the rig's up, keeping its distance to the
    focus; the views of a ring start at input camera 0's angle on the ellipse.

    Args:
        inputs: T >= 2 cameras, e.g. a run's training views.
        ring_views: M views per ring.
        elevations: degrees in (-90, 90), one ring each.

    Returns:
        T + M x len(elevations) cameras, float32.

    Raises:
        ValueError: as :func:`~sparse3d.reconstruction.novel_views.novel_view_rig`.
    """
    rig = novel_view_rig(inputs)
    angles = rig.thetas[0] + 2 * math.pi * torch.arange(ring_views, dtype=torch.float64) / ring_views  # [M]
    offsets = rig.positions(angles) - rig.focus  # [M, 3] from the focus to the ellipse
    along = torch.nn.functional.normalize(offsets, dim=-1)
    # The unit vector orthogonal to each offset in the plane of the offset and the up.
    lift = torch.nn.functional.normalize(rig.up - (along @ rig.up)[:, None] * along, dim=-1)  # [M, 3]
    radius = offsets.norm(dim=-1, keepdim=True)  # [M, 1]
    viewmats, Ks = [inputs.viewmats], [inputs.Ks]
    for elevation in elevations:
        e = math.radians(elevation)
        eyes = rig.focus + math.cos(e) * offsets + math.sin(e) * radius * lift  # [M, 3]
        viewmats.append(look_at_viewmats(eyes, rig.focus.expand_as(eyes), up=tuple(rig.up.tolist())))
        Ks.append(inputs.Ks[0].expand(ring_views, 3, 3))
    return Cameras(torch.cat(viewmats), torch.cat(Ks), inputs.width, inputs.height)


def mask_depths(depths: Tensor, alphas: Tensor, alpha_threshold: float) -> Tensor:
    """``depths`` with 0 (no measurement) where ``alphas`` < ``alpha_threshold`` or the
    depth is not a finite positive number.

    Args:
        depths: float [C, H, W, 1] camera-frame z.
        alphas: float [C, H, W, 1] rendered opacity.

    Returns:
        float32 [C, H, W] depths.
    """
    valid = (alphas >= alpha_threshold) & torch.isfinite(depths) & (depths > 0)
    return torch.where(valid, depths, torch.zeros_like(depths))[..., 0].float()


def depth_points(cameras: Cameras, depths: Tensor) -> Tensor:
    """World points seen at the pixel centres with a measurement (depth > 0).

    Args:
        cameras: C cameras.
        depths: float [C, H, W] camera-frame z, 0 where there is none.

    Returns:
        float64 [P, 3] world points, P = the number of measured pixels.
    """
    v, u = torch.meshgrid(torch.arange(cameras.height, dtype=torch.float64) + 0.5,
                          torch.arange(cameras.width, dtype=torch.float64) + 0.5, indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)], -1)  # [H, W, 3] homogeneous pixel centres
    rays = pixels @ torch.linalg.inv(cameras.Ks.double()).transpose(1, 2)[:, None]  # [C, H, W, 3], z = 1
    points_cam = rays * depths.double()[..., None]
    rots, trans = cameras.viewmats[:, :3, :3].double(), cameras.viewmats[:, :3, 3].double()
    points = (points_cam - trans[:, None, None]) @ rots[:, None]  # R^T (x - t), row vectors
    return points[depths > 0]


def scene_bounds(points: Tensor) -> Tensor:
    """The box of ``points`` [P, 3] between their 0.1 and 99.9 percentiles per axis (a few
    far floaters neither coarsen the voxels nor blow up the volume).

    Returns:
        float64 [2, 3] (min corner, max corner), world frame.

    Raises:
        ValueError: no points, or all in one place.
    """
    if len(points) == 0:
        raise ValueError("no pixel has a rendered depth at alpha >= alpha_threshold: nothing to mesh "
                         "(is the object in view, or is alpha_threshold too high?)")
    stride = max(1, len(points) // _MAX_EXTENT_POINTS)
    bounds = torch.quantile(points[::stride].double(), torch.tensor(_EXTENT_QUANTILES, dtype=torch.float64), dim=0)
    if not (bounds[1] - bounds[0]).max() > 0:
        raise ValueError("the rendered depth points all lie in one place: the scene has no extent to mesh")
    return bounds


def fuse_tsdf(cameras: Cameras, depths: Tensor, rgbs: Tensor, bounds: Tensor, voxel_size: float,
              sdf_trunc: float) -> Mesh:
    """Fuses depth maps into a TSDF over ``bounds`` and extracts its zero level set with colours.

    The volume is open3d's ``UniformTSDFVolume``: a cube over ``bounds`` grown by
    ``sdf_trunc`` + 2 voxels on every side (so that a surface on the box still has its
    band of distances), about 48 bytes per voxel. Surfaces outside the cube are left out.

    Args:
        cameras: C cameras (OpenCV world-to-camera ``viewmats``, ``Ks`` with pixel centres
            at +0.5).
        depths: float [C, H, W] camera-frame z per pixel, 0 where there is no measurement.
        rgbs: float [C, H, W, 3] colours in [0, 1].
        bounds: float [2, 3] world box to mesh (min corner, max corner), e.g. from
            :func:`scene_bounds`.
        voxel_size: voxel edge in world units.
        sdf_trunc: truncation distance in world units (a few voxels).

    Returns:
        The mesh (engine.scene.Mesh): float32 [V, 3] world vertices, int64 [F, 3] faces
        counter-clockwise seen from outside, uint8 [V, 3] vertex colours; V = F = 0 when
        nothing was observed.

    Raises:
        MeshDependencyError: open3d cannot be imported.
        ValueError: shapes that do not match the cameras, or a cube of more than
            :data:`MAX_GRID` voxels per side.
    """
    count, height, width = len(cameras), cameras.height, cameras.width
    if depths.shape != (count, height, width) or rgbs.shape != (count, height, width, 3):
        raise ValueError(f"fuse_tsdf: depths must be [{count}, {height}, {width}] and rgbs "
                         f"[{count}, {height}, {width}, 3], got {list(depths.shape)} and {list(rgbs.shape)}")
    margin = sdf_trunc + 2 * voxel_size
    low = bounds[0].double() - margin
    grid = math.ceil(float((bounds[1] - bounds[0]).max() + 2 * margin) / voxel_size)
    if grid > MAX_GRID:
        raise ValueError(f"voxel_size={voxel_size:.4g} gives {grid} voxels along the scene's longest side "
                         f"(at most {MAX_GRID}); give a larger voxel_size or a smaller resolution")
    o3d = import_open3d()
    integration = o3d.pipelines.integration
    volume = integration.UniformTSDFVolume(length=grid * voxel_size, resolution=grid, sdf_trunc=sdf_trunc,
                                           color_type=integration.TSDFVolumeColorType.RGB8,
                                           origin=low.numpy()[:, None])
    depth_np = depths.to(torch.float32).numpy()
    rgb_np = (rgbs.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    depth_trunc = float(depth_np.max()) + 1.0  # open3d drops depths beyond this: keep all
    Ks, viewmats = cameras.Ks.double().numpy(), cameras.viewmats.double().numpy()
    for i in range(count):
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(np.ascontiguousarray(rgb_np[i])), o3d.geometry.Image(np.ascontiguousarray(depth_np[i])),
            depth_scale=1.0, depth_trunc=depth_trunc, convert_rgb_to_intensity=False,
        )
        (fx, _, cx), (_, fy, cy) = Ks[i, 0], Ks[i, 1]
        # open3d centres pixel (u, v) at (u, v), this library at (u + 0.5, v + 0.5).
        intrinsic = o3d.camera.PinholeCameraIntrinsic(width, height, fx, fy, cx - 0.5, cy - 0.5)
        volume.integrate(rgbd, intrinsic, viewmats[i])
    mesh = volume.extract_triangle_mesh()
    vertices = torch.from_numpy(np.asarray(mesh.vertices, dtype=np.float32).reshape(-1, 3))
    faces = torch.from_numpy(np.asarray(mesh.triangles, dtype=np.int64).reshape(-1, 3))
    colors = np.asarray(mesh.vertex_colors, dtype=np.float64).reshape(-1, 3)
    if len(colors) != len(vertices):  # open3d leaves out the colours of an empty mesh
        colors = np.zeros((len(vertices), 3))
    colors = torch.from_numpy(np.clip(np.round(colors * 255), 0, 255).astype(np.uint8))
    return Mesh(vertices=vertices, faces=faces, vertex_colors=colors, name="tsdf mesh")


def mesh_from_renderer(renderer: CameraRenderer, inputs: Cameras, config: TSDFConfig, progress: bool = False) -> Mesh:
    """Renders the views of :func:`fusion_cameras` around ``inputs`` and fuses them.

    Args:
        renderer: a method (or anything with ``get_outputs_for_camera``) that renders depth.
        inputs: T >= 2 cameras around the object, e.g. the training views (any device).
        config: the fusion settings.
        progress: show a progress bar while rendering (for the command line).

    Returns:
        The mesh, as :func:`fuse_tsdf`.

    Raises:
        MeshDependencyError: open3d cannot be imported (checked before rendering).
        ValueError: the renderer gives no depth, the cameras span no rig, or nothing is seen.
    """
    import_open3d()
    cameras = fusion_cameras(inputs.to("cpu"), config.ring_views, config.elevations)
    views = render_views(renderer, cameras, with_depth=True, progress=progress)
    depths = mask_depths(views.depths, views.alphas, config.alpha_threshold)
    bounds = scene_bounds(depth_points(cameras, depths))
    voxel = config.voxel_size or float((bounds[1] - bounds[0]).max()) / config.resolution
    return fuse_tsdf(cameras, depths, views.rgbs, bounds, voxel, config.trunc_voxels * voxel)


def write_mesh(renderer: CameraRenderer, inputs: Cameras, path: Path, config: TSDFConfig | None = None,
               progress: bool = False) -> Mesh:
    """Meshes ``renderer`` around ``inputs`` (:func:`mesh_from_renderer`) and writes the
    mesh to ``path`` (:func:`write_mesh_ply`), e.g. RUN_DIR/mesh.ply at the end of training.

    Args:
        config: the fusion settings; None: the defaults.

    Returns:
        The mesh written.

    Raises:
        MeshDependencyError: open3d or trimesh cannot be imported (checked before rendering).
        ValueError: as :func:`mesh_from_renderer`.
    """
    import_trimesh()
    mesh = mesh_from_renderer(renderer, inputs, config or TSDFConfig(), progress)
    write_mesh_ply(path, mesh)
    return mesh


def write_mesh_ply(path: Path, mesh: Mesh) -> None:
    """Writes ``mesh`` as a binary PLY with per-vertex colours (trimesh), atomically.

    Raises:
        MeshDependencyError: trimesh cannot be imported.
    """
    trimesh = import_trimesh()
    out = trimesh.Trimesh(
        vertices=mesh.vertices.detach().cpu().numpy(),
        faces=mesh.faces.cpu().numpy(),
        vertex_colors=None if mesh.vertex_colors is None else mesh.vertex_colors.cpu().numpy(),
        process=False,  # keep the vertices and faces as fused (no merging or reordering)
    )
    write_atomic(Path(path), lambda tmp: tmp.write_bytes(out.export(file_type="ply", encoding="binary")))


def import_open3d():
    """The ``open3d`` module.

    Raises:
        MeshDependencyError: one line naming what to install: the extra, or the system
            library that open3d's Linux wheels link (libusb-1.0; Debian's libusb-1.0-0).
    """
    try:
        import open3d
    except ImportError as err:
        if err.name == "open3d":
            raise MeshDependencyError(f"meshing needs open3d, which is not installed ({INSTALL_HINT})") from err
        hint = "apt-get install libusb-1.0-0" if "libusb" in str(err) else f"reinstall it: {INSTALL_HINT}"
        raise MeshDependencyError(f"open3d is installed but cannot be imported: {err} ({hint})") from err
    return open3d


def import_trimesh():
    """The ``trimesh`` module.

    Raises:
        MeshDependencyError: one line naming the extra to install.
    """
    try:
        import trimesh
    except ImportError as err:
        raise MeshDependencyError(f"writing meshes needs trimesh, which is not installed ({INSTALL_HINT})") from err
    return trimesh
