"""Procedural triangle meshes (object frame, +z up), with per-vertex normals and UVs.

Every builder returns a :class:`Mesh` whose vertices are float64 for exact geometry;
:func:`normalized` centres a mesh and scales it into the unit sphere.
"""

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh with smooth-shading normals and texture coordinates."""

    verts: Tensor
    """float64 [V, 3] vertex positions."""
    faces: Tensor
    """int64 [F, 3] vertex indices, counter-clockwise seen from outside."""
    normals: Tensor
    """float64 [V, 3] unit vertex normals."""
    uvs: Tensor
    """float64 [V, 2] texture coordinates in [0, 1]."""


def uv_sphere(n_lat: int = 32, n_lon: int = 64) -> Mesh:
    """Unit sphere; u follows longitude, v latitude (v = 0 at the south pole)."""
    theta = torch.linspace(0, math.pi, n_lat + 1, dtype=torch.float64)  # from the north pole
    phi = torch.linspace(0, 2 * math.pi, n_lon + 1, dtype=torch.float64)
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    verts = torch.stack([t.sin() * p.cos(), t.sin() * p.sin(), t.cos()], -1).reshape(-1, 3)
    uvs = torch.stack([p / (2 * math.pi), 1 - t / math.pi], -1).reshape(-1, 2)
    return Mesh(verts, _grid_faces(n_lat, n_lon), verts.clone(), uvs)


def torus(major: float = 1.0, minor: float = 0.4, n_major: int = 64, n_minor: int = 24) -> Mesh:
    """Torus around the z axis; u follows the major circle, v the tube."""
    a = torch.linspace(0, 2 * math.pi, n_major + 1, dtype=torch.float64)
    b = torch.linspace(0, 2 * math.pi, n_minor + 1, dtype=torch.float64)
    aa, bb = torch.meshgrid(a, b, indexing="ij")
    normals = torch.stack([bb.cos() * aa.cos(), bb.cos() * aa.sin(), bb.sin()], -1).reshape(-1, 3)
    centres = torch.stack([aa.cos(), aa.sin(), torch.zeros_like(aa)], -1).reshape(-1, 3) * major
    uvs = torch.stack([aa / (2 * math.pi), bb / (2 * math.pi)], -1).reshape(-1, 2)
    return Mesh(centres + minor * normals, _grid_faces(n_major, n_minor), normals, uvs)


def capsule(radius: float = 0.5, length: float = 1.0, n_ring: int = 48, n_cap: int = 12) -> Mesh:
    """Capsule along z: a cylinder of ``length`` closed by two hemispheres of ``radius``."""
    # Profile from the south pole to the north pole: (ring radius, z, normal z-angle).
    angles = torch.cat(
        [
            torch.linspace(-math.pi / 2, 0, n_cap + 1, dtype=torch.float64),
            torch.linspace(0, math.pi / 2, n_cap + 1, dtype=torch.float64),
        ]
    )
    offset = torch.cat([torch.full((n_cap + 1,), -length / 2), torch.full((n_cap + 1,), length / 2)]).double()
    phi = torch.linspace(0, 2 * math.pi, n_ring + 1, dtype=torch.float64)
    aa, pp = torch.meshgrid(angles, phi, indexing="ij")
    oo = offset[:, None].expand_as(aa)
    normals = torch.stack([aa.cos() * pp.cos(), aa.cos() * pp.sin(), aa.sin()], -1)
    verts = radius * normals + torch.stack([torch.zeros_like(oo), torch.zeros_like(oo), oo], -1)
    height = length + 2 * radius
    uvs = torch.stack([pp / (2 * math.pi), (verts[..., 2] + height / 2) / height], -1)
    return Mesh(verts.reshape(-1, 3), _grid_faces(len(angles) - 1, n_ring), normals.reshape(-1, 3), uvs.reshape(-1, 2))


def box(size: tuple[float, float, float] = (1.0, 1.0, 1.0), n: int = 8) -> Mesh:
    """Axis-aligned box centred at the origin, each face an n x n grid with its own
    vertices (sharp edges); UVs span [0, 1] on every face."""
    s = torch.linspace(-1, 1, n + 1, dtype=torch.float64)
    uu, vv = torch.meshgrid(s, s, indexing="ij")
    half = torch.tensor(size, dtype=torch.float64) / 2
    verts, normals, uvs, faces = [], [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            # (a, b, axis) is right-handed, so the grid winds counter-clockwise seen from +axis.
            a, b = (axis + 1) % 3, (axis + 2) % 3
            if sign < 0:
                a, b = b, a
            p = torch.zeros(n + 1, n + 1, 3, dtype=torch.float64)
            p[..., a], p[..., b], p[..., axis] = uu, vv, sign
            normal = torch.zeros(3, dtype=torch.float64)
            normal[axis] = sign
            faces.append(_grid_faces(n, n) + sum(len(v) for v in verts))
            verts.append((p * half).reshape(-1, 3))
            normals.append(normal.expand(verts[-1].shape))
            uvs.append(torch.stack([uu, vv], -1).reshape(-1, 2) / 2 + 0.5)
    return Mesh(torch.cat(verts), torch.cat(faces), torch.cat(normals), torch.cat(uvs))


def normalized(mesh: Mesh, radius: float = 1.0) -> Mesh:
    """The mesh centred on its bounding-box centre and scaled to fit the sphere of ``radius``."""
    centre = (mesh.verts.amax(0) + mesh.verts.amin(0)) / 2
    scale = radius / (mesh.verts - centre).norm(dim=1).max()
    return Mesh((mesh.verts - centre) * scale, mesh.faces, mesh.normals, mesh.uvs)


def rotated(mesh: Mesh, rotation: Tensor) -> Mesh:
    """The mesh with vertices and normals rotated by ``rotation`` [3, 3]."""
    rot = rotation.to(torch.float64)
    return Mesh(mesh.verts @ rot.T, mesh.faces, mesh.normals @ rot.T, mesh.uvs)


def vertex_normals(verts: Tensor, faces: Tensor) -> Tensor:
    """float64 [V, 3] area-weighted unit vertex normals of a triangle mesh (for loaded
    meshes that carry none); isolated vertices get (0, 0, 1)."""
    tri = verts[faces]  # [F, 3, 3]
    face_n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 * area
    normals = torch.zeros_like(verts).index_add(0, faces.reshape(-1), face_n.repeat_interleave(3, 0))
    length = normals.norm(dim=1, keepdim=True)
    fallback = torch.tensor([0.0, 0.0, 1.0], dtype=verts.dtype)
    return torch.where(length > 0, normals / length.clamp(min=1e-300), fallback)


def _grid_faces(rows: int, cols: int) -> Tensor:
    """int64 [2 * rows * cols, 3] triangles of a (rows + 1) x (cols + 1) vertex grid."""
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    v00 = (r * (cols + 1) + c).reshape(-1)
    v01, v10 = v00 + 1, v00 + cols + 1
    v11 = v10 + 1
    return torch.cat([torch.stack([v00, v10, v11], 1), torch.stack([v00, v11, v01], 1)])
