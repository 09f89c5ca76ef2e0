"""3D Gaussian splatting PLY files in the standard (Inria 3DGS) layout, so exported scenes
open in common splat viewers and trained scenes from other tools load here.

One ``vertex`` element, float32 properties in this order::

    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 f_rest_0 ... f_rest_{3(K-1)-1}
    opacity scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3

with K = (degree + 1)^2 spherical-harmonic coefficients per colour channel, ``f_rest``
stored channel-major (all of red's higher-order coefficients, then green's, then blue's),
``opacity`` as a logit, ``scale_*`` as natural logs, ``rot_*`` a quaternion (w, x, y, z),
normals written as zeros. The PLY encoding itself is plyfile's: files are written binary
little-endian; reading accepts anything plyfile reads (big-endian, ASCII, other scalar
types, any property order, extra properties and elements, which are ignored).
"""

import math
from pathlib import Path

import numpy as np
import plyfile
import torch
from torch import Tensor

from sparse3d.io.atomic import write_atomic

SPLAT_KEYS = ("means", "scales", "quats", "opacities", "sh0", "shN")
"""Names of the per-Gaussian tensors, as :func:`read_gaussians_ply` returns them (the
parameter names of the splat methods)."""


def ply_property_names(sh_degree: int) -> list[str]:
    """The vertex property names of the standard layout for ``sh_degree``, in file order."""
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return [
        "x",
        "y",
        "z",
        "nx",
        "ny",
        "nz",
        "f_dc_0",
        "f_dc_1",
        "f_dc_2",
        *[f"f_rest_{i}" for i in range(n_rest)],
        "opacity",
        "scale_0",
        "scale_1",
        "scale_2",
        "rot_0",
        "rot_1",
        "rot_2",
        "rot_3",
    ]


def write_gaussians_ply(
    path: Path, means: Tensor, scales: Tensor, quats: Tensor, opacities: Tensor, sh0: Tensor, shN: Tensor
) -> None:
    """Writes N Gaussians as a binary little-endian 3DGS PLY, atomically.

    Args:
        means: float [N, 3] world-frame centres.
        scales: float [N, 3] natural logs of the axis scales.
        quats: float [N, 4] rotations (w, x, y, z), stored as given.
        opacities: float [N] opacity logits.
        sh0: float [N, 1, 3] degree-0 SH coefficients (``f_dc_*``).
        shN: float [N, K - 1, 3] higher-order SH coefficients, K = (degree + 1)^2 (K - 1 may be 0).
    """
    n = means.shape[0]
    expected = {"means": (n, 3), "scales": (n, 3), "quats": (n, 4), "opacities": (n,), "sh0": (n, 1, 3)}
    given = {"means": means, "scales": scales, "quats": quats, "opacities": opacities, "sh0": sh0}
    for name, shape in expected.items():
        if tuple(given[name].shape) != shape:
            raise ValueError(
                f"write_gaussians_ply({path}): {name} must be {list(shape)}, got {list(given[name].shape)}"
            )
    if shN.dim() != 3 or shN.shape[0] != n or shN.shape[2] != 3 or not _is_square(shN.shape[1] + 1):
        raise ValueError(
            f"write_gaussians_ply({path}): shN must be [{n}, (degree + 1)^2 - 1, 3], got {list(shN.shape)}"
        )
    degree = math.isqrt(shN.shape[1] + 1) - 1
    rest = shN.transpose(1, 2).reshape(n, -1)  # channel-major, as 3DGS stores it
    columns = [means, torch.zeros(n, 3), sh0[:, 0], rest, opacities[:, None], scales, quats]
    table = torch.cat([c.detach().to("cpu", torch.float32) for c in columns], 1).numpy()
    # Each float32 row [P] reinterpreted as one record of P named float32 fields: no copy.
    record = np.dtype([(name, "<f4") for name in ply_property_names(degree)])
    vertices = np.ascontiguousarray(table, dtype="<f4").view(record).reshape(n)
    ply = plyfile.PlyData([plyfile.PlyElement.describe(vertices, "vertex")], byte_order="<")
    write_atomic(Path(path), lambda tmp: ply.write(str(tmp)))


def read_gaussians_ply(path: Path) -> dict[str, Tensor]:
    """Reads a 3DGS PLY (any property order; the SH degree follows from the ``f_rest``
    count).

    Returns:
        float32 tensors keyed as :data:`SPLAT_KEYS`, shaped and encoded as the arguments
        of :func:`write_gaussians_ply`.

    Raises:
        FileNotFoundError, or ValueError naming the file and the unreadable part or the
        missing/bad property.
    """
    path = Path(path)
    vertex, scalars = _read_vertices(path, "a 3DGS PLY")
    count = vertex.count
    n_rest = sum(1 for name in scalars if name.startswith("f_rest_"))
    if n_rest % 3 or not _is_square(n_rest // 3 + 1):
        raise ValueError(f"{path}: {n_rest} f_rest_* properties; expected 3 * ((degree + 1)^2 - 1) (0, 9, 24, 45, ...)")
    degree = math.isqrt(n_rest // 3 + 1) - 1
    columns = {}
    for name in ply_property_names(degree):
        if name in ("nx", "ny", "nz"):
            continue
        if name not in scalars:
            raise ValueError(f"{path}: vertex property '{name}' is missing or not a scalar (3DGS layout)")
        columns[name] = torch.from_numpy(np.ascontiguousarray(vertex[name], dtype=np.float32))
        if not torch.isfinite(columns[name]).all():
            raise ValueError(f"{path}: vertex property '{name}' has non-finite values")

    def stack(*names: str) -> Tensor:
        return torch.stack([columns[n] for n in names], 1) if names else torch.zeros(count, 0)

    rest = stack(*[f"f_rest_{i}" for i in range(n_rest)])
    return {
        "means": stack("x", "y", "z"),
        "scales": stack("scale_0", "scale_1", "scale_2"),
        "quats": stack("rot_0", "rot_1", "rot_2", "rot_3"),
        "opacities": columns["opacity"],
        "sh0": stack("f_dc_0", "f_dc_1", "f_dc_2")[:, None, :],
        "shN": rest.reshape(count, 3, n_rest // 3).transpose(1, 2).contiguous(),
    }


def _read_vertices(path: Path, expected: str) -> tuple[plyfile.PlyElement, set[str]]:
    """The ``vertex`` element of a PLY file and the names of its scalar properties.

    Raises:
        FileNotFoundError, or ValueError naming the file, and ``expected`` (what the file
        should have been) when it has no vertices.
    """
    if not path.is_file():
        raise FileNotFoundError(f"PLY file not found: {path}")
    try:
        # mmap=False: the columns are copied out anyway, and a memory map would keep the
        # file open for as long as any view of it lives.
        ply = plyfile.PlyData.read(str(path), mmap=False)
    except (plyfile.PlyParseError, ValueError) as err:
        raise ValueError(f"{path}: not a readable PLY file ({err})") from err
    elements = {element.name: element for element in ply.elements}
    if "vertex" not in elements:
        raise ValueError(f"{path}: no 'vertex' element (elements: {sorted(elements)}); expected {expected}")
    vertex = elements["vertex"]
    return vertex, {p.name for p in vertex.properties if not isinstance(p, plyfile.PlyListProperty)}


def _is_square(k: int) -> bool:
    return k >= 1 and math.isqrt(k) ** 2 == k


def write_points_ply(path: Path, points: Tensor, colors: Tensor) -> None:
    """Writes a coloured point cloud as a binary little-endian PLY, atomically: one
    ``vertex`` element with float32 ``x y z`` and uchar ``red green blue``, the layout that
    Open3D, MeshLab and the 3DGS point loaders read.

    Args:
        points: float [P, 3] positions, stored as float32.
        colors: uint8 [P, 3] RGB.
    """
    n = points.shape[0]
    if points.dim() != 2 or points.shape[1] != 3 or not points.is_floating_point():
        raise ValueError(
            f"write_points_ply({path}): points must be float [P, 3], got {points.dtype} {list(points.shape)}"
        )
    if colors.dtype != torch.uint8 or tuple(colors.shape) != (n, 3):
        raise ValueError(
            f"write_points_ply({path}): colors must be uint8 [{n}, 3], got {colors.dtype} {list(colors.shape)}"
        )
    rgb = ("red", "green", "blue")
    vertices = np.empty(n, dtype=[(axis, "<f4") for axis in "xyz"] + [(channel, "u1") for channel in rgb])
    for i, name in enumerate("xyz"):
        vertices[name] = points[:, i].detach().to("cpu", torch.float32).numpy()
    for i, name in enumerate(rgb):
        vertices[name] = colors[:, i].cpu().numpy()
    ply = plyfile.PlyData([plyfile.PlyElement.describe(vertices, "vertex")], byte_order="<")
    write_atomic(Path(path), lambda tmp: ply.write(str(tmp)))


def read_points_ply(path: Path) -> tuple[Tensor, Tensor | None]:
    """Reads a point cloud PLY: any encoding plyfile reads, positions of any scalar type,
    extra properties and elements ignored.

    Returns:
        (float32 [P, 3] positions ``x y z``, uint8 [P, 3] colours ``red green blue``, or
        None when the file has no colours).

    Raises:
        FileNotFoundError, or ValueError naming the file and the unreadable part or the
        missing/bad property.
    """
    path = Path(path)
    vertex, scalars = _read_vertices(path, "a point cloud")
    rgb = ("red", "green", "blue")
    for name in ("x", "y", "z", *(rgb if scalars & set(rgb) else ())):
        if name not in scalars:
            raise ValueError(
                f"{path}: vertex property '{name}' is missing or not a scalar (point clouds need x, y, z "
                "and, with colours, all of red, green, blue)"
            )
    points = torch.from_numpy(np.stack([vertex[name] for name in "xyz"], 1).astype(np.float32))
    if not torch.isfinite(points).all():
        raise ValueError(f"{path}: vertex positions x, y, z have non-finite values")
    if not scalars & set(rgb):
        return points, None
    values = np.stack([vertex[name] for name in rgb], 1)
    if values.dtype.kind not in "ui" or (values.size and (values.min() < 0 or values.max() > 255)):
        raise ValueError(
            f"{path}: vertex colours red, green, blue must be integers in [0, 255] (uchar), got {values.dtype}"
        )
    return points, torch.from_numpy(values.astype(np.uint8))


# The 12 triangles of a cube whose 8 corners are numbered by bits (x, y, z) = (1, 2, 4),
# wound counter-clockwise seen from outside.
_CUBE_FACES = np.array([
    [0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6],  # z = 0, z = 1
    [0, 1, 4], [1, 5, 4], [2, 6, 3], [3, 6, 7],  # y = 0, y = 1
    [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5],  # x = 0, x = 1
])


def write_boxes_ply(path: Path, lower: Tensor, upper: Tensor) -> None:
    """Writes axis-aligned boxes as a triangle mesh PLY (8 vertices and 12 faces each),
    binary little-endian, atomically: e.g. Strivec's local tensors, to open beside the
    scene in MeshLab or Open3D.

    Args:
        lower, upper: float [B, 3] the boxes' corners, world frame.
    """
    if lower.dim() != 2 or lower.shape[1] != 3 or upper.shape != lower.shape:
        raise ValueError(f"write_boxes_ply({path}): lower and upper must be float [B, 3], got {list(lower.shape)} and {list(upper.shape)}")
    bits = torch.tensor([[(c >> a) & 1 for a in range(3)] for c in range(8)], dtype=torch.bool)
    corners = torch.where(bits[None], upper[:, None, :], lower[:, None, :]).reshape(-1, 3)
    vertices = np.empty(len(corners), dtype=[(axis, "<f4") for axis in "xyz"])
    for i, name in enumerate("xyz"):
        vertices[name] = corners[:, i].detach().to("cpu", torch.float32).numpy()
    faces = (np.arange(len(lower))[:, None, None] * 8 + _CUBE_FACES[None]).reshape(-1, 3)
    face_rows = np.empty(len(faces), dtype=[("vertex_indices", "i4", (3,))])
    face_rows["vertex_indices"] = faces
    elements = [plyfile.PlyElement.describe(vertices, "vertex"), plyfile.PlyElement.describe(face_rows, "face")]
    ply = plyfile.PlyData(elements, byte_order="<")
    write_atomic(Path(path), lambda tmp: ply.write(str(tmp)))
