"""The catalogue of synthetic objects: a mesh (normalised into the unit sphere) plus an
albedo function. Procedural objects need nothing beyond torch; the ``pyvista_*`` objects
use the example meshes and the Earth texture that ship inside the pyvista wheel (meshes
read with plyfile, the JPEG texture with Pillow)."""

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from plyfile import PlyData
from torch import Tensor

from sparse3d.data.images import read_image
from sparse3d.synthetic.objects import meshes, textures
from sparse3d.synthetic.objects.meshes import Mesh

Albedo = Callable[[Tensor, Tensor], Tensor]
"""(object-frame positions [..., 3], UVs [..., 2]) -> RGB albedo [..., 3] in [0, 1]."""


@dataclass(frozen=True)
class SyntheticObject:
    """A renderable object of the synthetic benchmark."""

    name: str
    """Catalogue name, also the output folder name."""
    mesh: Mesh
    """The mesh, centred and inside the unit sphere."""
    albedo: Albedo
    """Its surface colour."""


def _rotation(axis: int, degrees: float) -> Tensor:
    """float64 [3, 3] rotation by ``degrees`` about world axis ``axis`` (0 = x, 1 = y, 2 = z)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    i, j = (axis + 1) % 3, (axis + 2) % 3
    rot = torch.eye(3, dtype=torch.float64)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot


def _sphere() -> SyntheticObject:
    colors = textures.palette("#e4572e", "#17bebb")
    accent = textures.palette("#ffc914", "#2e282a")

    def albedo(pos: Tensor, uv: Tensor) -> Tensor:
        base = textures.checker_uv(uv, (12, 6), colors)
        band = (pos[..., 2].abs() < 0.12)[..., None]  # an equator band breaks the symmetry
        return torch.where(band, textures.stripes(uv[..., 0], 1 / 24, accent), base)

    return SyntheticObject("sphere", meshes.normalized(meshes.uv_sphere(32, 64)), albedo)


def _torus() -> SyntheticObject:
    colors = textures.palette("#264653", "#2a9d8f", "#e9c46a", "#f4a261", "#e76f51")
    mesh = meshes.rotated(meshes.normalized(meshes.torus(1.0, 0.38, 64, 24)), _rotation(0, 35.0))
    return SyntheticObject("torus", mesh, lambda pos, uv: textures.stripes(uv[..., 0], 1 / 15, colors))


def _capsule() -> SyntheticObject:
    ramp = textures.palette("#3d348b", "#7678ed", "#f7b801", "#f18701")
    mesh = meshes.rotated(meshes.normalized(meshes.capsule(0.45, 1.1, 48, 12)), _rotation(1, 40.0) @ _rotation(0, 20.0))
    return SyntheticObject(
        "capsule", mesh, lambda pos, uv: textures.blend(textures.value_noise(pos, 2.5, seed=7), ramp)
    )


def _box() -> SyntheticObject:
    colors = textures.palette("#f1faee", "#1d3557")
    mesh = meshes.rotated(meshes.normalized(meshes.box((1.0, 0.75, 0.55), 8)), _rotation(2, 30.0) @ _rotation(0, 15.0))
    return SyntheticObject("box", mesh, lambda pos, uv: textures.checker_3d(pos + 1e-3, 0.25, colors))


def _pyvista_asset(filename: str) -> Path:
    """Path of an asset file shipped in the pyvista wheel, found without importing pyvista
    (so its heavy VTK dependency is not needed: ``pip install --no-deps pyvista`` suffices)."""
    spec = importlib.util.find_spec("pyvista")
    if spec is None or spec.origin is None:
        raise ValueError(
            f"synthetic objects from {filename} need the pyvista package's example files (pip install pyvista)"
        )
    path = Path(spec.origin).parent / "examples" / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not in this pyvista install")
    return path


def _pyvista_mesh(name: str) -> SyntheticObject:
    """An example mesh of the pyvista wheel, coloured by noise and a solid checker."""
    ply = PlyData.read(str(_pyvista_asset(f"{name}.ply")))
    vertex = ply["vertex"]
    verts = torch.from_numpy(np.stack([vertex["x"], vertex["y"], vertex["z"]], 1).astype(np.float64))
    # Fan-triangulate polygons (the shipped meshes are all triangles already).
    polygons = ply["face"]["vertex_indices"]
    faces = torch.tensor([[f[0], f[i], f[i + 1]] for f in polygons for i in range(1, len(f) - 1)], dtype=torch.int64)
    mesh = Mesh(verts, faces, meshes.vertex_normals(verts, faces), torch.zeros(len(verts), 2, dtype=torch.float64))
    ramp = textures.palette("#8ecae6", "#219ebc", "#ffb703", "#fb8500")
    checker = textures.palette("#ffffff", "#222222")

    def albedo(pos: Tensor, uv: Tensor) -> Tensor:
        noise = textures.blend(textures.value_noise(pos, 3.0, seed=11), ramp)
        return 0.7 * noise + 0.3 * textures.checker_3d(pos, 0.2, checker)

    return SyntheticObject(f"pyvista_{name}", meshes.normalized(mesh), albedo)


def _earth() -> SyntheticObject:
    """A UV sphere wearing the equirectangular Earth texture of the pyvista wheel."""
    texture = torch.from_numpy(read_image(_pyvista_asset("2k_earth_daymap.jpg"))[:, :, :3].astype(np.float64) / 255.0)
    mesh = meshes.rotated(meshes.uv_sphere(48, 96), _rotation(0, 23.4))  # tilted axis: not symmetric about z
    return SyntheticObject("pyvista_earth", mesh, lambda pos, uv: textures.sample_image(texture, uv))


PROCEDURAL_OBJECTS: dict[str, Callable[[], SyntheticObject]] = {
    "sphere": _sphere,
    "torus": _torus,
    "capsule": _capsule,
    "box": _box,
}
REGISTRY_OBJECTS: dict[str, Callable[[], SyntheticObject]] = {
    **{f"pyvista_{name}": (lambda name=name: _pyvista_mesh(name)) for name in ("airplane", "ant", "nut")},
    "pyvista_earth": _earth,
}


def build_object(name: str) -> SyntheticObject:
    """The catalogue object called ``name`` (see PROCEDURAL_OBJECTS and REGISTRY_OBJECTS)."""
    builder = PROCEDURAL_OBJECTS.get(name) or REGISTRY_OBJECTS.get(name)
    if builder is None:
        raise ValueError(
            f"unknown synthetic object {name!r}; choose from {sorted(PROCEDURAL_OBJECTS) + sorted(REGISTRY_OBJECTS)}"
        )
    return builder()
