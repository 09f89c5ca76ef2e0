"""A vectorised CPU z-buffer rasterizer for triangle meshes.

Each pixel is sampled once, at its centre ``(u + 0.5, v + 0.5)`` (the convention of
:mod:`sparse3d.geometry.cameras`), so coverage, depth and interpolated attributes are
exact at that point: depth is the camera-frame z of the visible surface, and attributes
use perspective-correct barycentrics. The synthetic object benchmark renders with it (at
S times the resolution, then box-filtered), and tests use it as an oracle for the other
renderers.

The work is done on (face, pixel) candidate pairs from each face's pixel bounding box,
in chunks of bounded size; the nearest candidate per pixel wins, ties go to the lower
face index, so the result is deterministic.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

# (face, pixel) candidates handled at once: bounds the working memory to ~100 MB.
_PAIRS_PER_CHUNK = 1 << 20


@dataclass(frozen=True)
class MeshRaster:
    """Per-pixel result of :func:`rasterize_mesh` for one camera (H x W image)."""

    face_ids: Tensor
    """int64 [H, W] index of the visible face, -1 where no face covers the pixel centre."""
    bary: Tensor
    """float32 [H, W, 3] perspective-correct barycentric weights of the face's three
    vertices (zeros where ``face_ids`` is -1)."""
    depth: Tensor
    """float32 [H, W] camera-frame z of the visible surface, 0 where ``face_ids`` is -1."""

    @property
    def mask(self) -> Tensor:
        """bool [H, W], True where a face covers the pixel centre."""
        return self.face_ids >= 0


def rasterize_mesh(
    verts: Tensor, faces: Tensor, viewmat: Tensor, K: Tensor, width: int, height: int, near: float = 1e-2
) -> MeshRaster:
    """Rasterizes a triangle mesh into one pinhole camera (both faces of every triangle).

    Args:
        verts: float [V, 3] world-frame vertex positions.
        faces: int64 [F, 3] vertex indices per triangle.
        viewmat: float [4, 4] world-to-camera transform (OpenCV axes).
        K: float [3, 3] intrinsics.
        width, height: image size W, H in pixels.
        near: faces with a vertex at camera z <= ``near`` are dropped (no clipping).

    Returns:
        A :class:`MeshRaster` of [H, W] maps.
    """
    if verts.dim() != 2 or verts.shape[1] != 3:
        raise ValueError(f"rasterize_mesh: verts must be [V, 3], got {list(verts.shape)}")
    if faces.dim() != 2 or faces.shape[1] != 3 or faces.dtype != torch.int64:
        raise ValueError(f"rasterize_mesh: faces must be int64 [F, 3], got {faces.dtype} {list(faces.shape)}")
    if faces.numel() and (faces.min() < 0 or faces.max() >= verts.shape[0]):
        raise ValueError(
            f"rasterize_mesh: face indices must lie in [0, {verts.shape[0]}), got {faces.min()}..{faces.max()}"
        )
    # float64 keeps edge tests and depths exact to float32 precision for any mesh scale.
    cam = verts.to(torch.float64) @ viewmat[:3, :3].to(torch.float64).T + viewmat[:3, 3].to(torch.float64)
    pix = cam @ K.to(torch.float64).T
    screen = pix[:, :2] / pix[:, 2:3]  # [V, 2]
    tri_z = cam[faces, 2]  # [F, 3]
    tri_xy = screen[faces]  # [F, 3, 2]
    n_pix = width * height
    best_depth = torch.full((n_pix,), torch.inf, dtype=torch.float64)
    best_face = torch.full((n_pix,), -1, dtype=torch.int64)
    best_bary = torch.zeros(n_pix, 3, dtype=torch.float64)
    face_ids, lo, size = _candidate_boxes(tri_xy, tri_z, near, width, height)
    counts = size[:, 0] * size[:, 1]
    for chunk in _chunks_by_budget(counts, _PAIRS_PER_CHUNK):
        f = face_ids[chunk]
        owner = torch.repeat_interleave(torch.arange(len(f)), counts[chunk])
        start = torch.cumsum(counts[chunk], 0) - counts[chunk]
        local = torch.arange(len(owner)) - start[owner]
        px = lo[chunk][owner, 0] + local % size[chunk][owner, 0]
        py = lo[chunk][owner, 1] + local // size[chunk][owner, 0]
        bary, inside = _screen_barycentrics(tri_xy[f][owner], px, py)
        owner, px, py, bary = owner[inside], px[inside], py[inside], bary[inside]
        inv_z = (bary / tri_z[f][owner]).sum(1)  # 1/z is affine in screen space
        depth = 1.0 / inv_z
        bary = bary / tri_z[f][owner] * depth[:, None]
        _merge_nearest(py * width + px, depth, f[owner], bary, best_depth, best_face, best_bary)
    hit = best_face >= 0
    return MeshRaster(
        face_ids=best_face.reshape(height, width),
        bary=(best_bary * hit[:, None]).to(torch.float32).reshape(height, width, 3),
        depth=torch.where(hit, best_depth, 0.0).to(torch.float32).reshape(height, width),
    )


def interpolate_attributes(raster: MeshRaster, faces: Tensor, vert_attrs: Tensor) -> Tensor:
    """Interpolates per-vertex attributes at every covered pixel.

    Args:
        raster: output of :func:`rasterize_mesh`.
        faces: int64 [F, 3], the faces that were rasterized.
        vert_attrs: float [V, A] per-vertex values (positions, normals, UVs, colours).

    Returns:
        float [H, W, A], zeros at uncovered pixels.
    """
    ids = raster.face_ids.clamp(min=0)
    corner = vert_attrs[faces[ids]]  # [H, W, 3, A]
    out = (raster.bary.to(vert_attrs.dtype)[..., None] * corner).sum(-2)
    return out * raster.mask[..., None]


def _candidate_boxes(tri_xy: Tensor, tri_z: Tensor, near: float, width: int, height: int):
    """Faces in front of ``near`` whose pixel-centre bounding box meets the image.

    Returns:
        face_ids int64 [F'], lo int64 [F', 2] first pixel (x, y), size int64 [F', 2] box
        width and height in pixels (>= 1).
    """
    # Pixel x covers centre x + 0.5, so the box is ceil(min - 0.5) .. floor(max - 0.5).
    lo = torch.ceil(tri_xy.amin(1) - 0.5).clamp(min=0)
    hi = torch.floor(tri_xy.amax(1) - 0.5)
    hi = torch.minimum(hi, torch.tensor([width - 1.0, height - 1.0], dtype=hi.dtype))
    area = _edge(tri_xy[:, 0], tri_xy[:, 1], tri_xy[:, 2])
    keep = (tri_z > near).all(1) & (hi >= lo).all(1) & (area != 0)
    face_ids = keep.nonzero()[:, 0]
    lo = lo[face_ids].to(torch.int64)
    size = hi[face_ids].to(torch.int64) - lo + 1
    return face_ids, lo, size


def _chunks_by_budget(counts: Tensor, budget: int) -> list[slice]:
    """Splits rows with ``counts`` [F] pairs each into consecutive slices, a new slice
    starting each time the running total crosses a multiple of ``budget`` (so a slice
    holds at most ``budget`` plus one row's pairs)."""
    if counts.numel() == 0:
        return []
    chunk_of_row = (torch.cumsum(counts, 0) - counts) // budget
    bounds = (torch.nonzero(chunk_of_row.diff())[:, 0] + 1).tolist()
    edges = [0, *bounds, len(counts)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def _edge(a: Tensor, b: Tensor, p: Tensor) -> Tensor:
    """Twice the signed area of triangle (a, b, p); all [..., 2] -> [...]."""
    return (b[..., 0] - a[..., 0]) * (p[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (p[..., 0] - a[..., 0])


def _screen_barycentrics(tri: Tensor, px: Tensor, py: Tensor) -> tuple[Tensor, Tensor]:
    """Screen-space barycentrics [P, 3] of pixel centres (px + .5, py + .5) in triangles
    ``tri`` [P, 3, 2], and a bool [P] inside mask (edges included, either winding)."""
    p = torch.stack([px + 0.5, py + 0.5], -1).to(tri.dtype)
    a, b, c = tri.unbind(1)
    area = _edge(a, b, c)
    bary = torch.stack([_edge(b, c, p), _edge(c, a, p), _edge(a, b, p)], -1) / area[:, None]
    return bary, (bary >= 0).all(1)


def _merge_nearest(
    pix: Tensor, depth: Tensor, face: Tensor, bary: Tensor, best_depth: Tensor, best_face: Tensor, best_bary: Tensor
) -> None:
    """Folds candidates (pixel ``pix`` [P], ``depth`` [P], ``face`` [P], ``bary`` [P, 3])
    into the running z-buffer in place; the nearest wins, then the lowest face index."""
    if pix.numel() == 0:
        return
    chunk_depth = torch.full_like(best_depth, torch.inf).scatter_reduce(0, pix, depth, "amin")
    at_min = depth == chunk_depth[pix]
    big = torch.iinfo(torch.int64).max
    chunk_face = torch.full_like(best_face, big).scatter_reduce(0, pix[at_min], face[at_min], "amin")
    winner = at_min & (face == chunk_face[pix])
    # Faces of later chunks have higher indices, so they replace only strictly nearer hits.
    winner &= depth < best_depth[pix]
    wpix = pix[winner]
    best_depth[wpix] = depth[winner]
    best_face[wpix] = face[winner]
    best_bary[wpix] = bary[winner]
