"""Procedural albedo textures. Each maps surface points (object-frame positions
[..., 3] and/or UVs [..., 2], float64) to RGB albedo [..., 3] in [0, 1]."""

import torch
from torch import Tensor


def palette(*hex_colors: str) -> Tensor:
    """float64 [K, 3] RGB in [0, 1] from "#rrggbb" strings."""
    return torch.tensor([[int(h[i : i + 2], 16) / 255.0 for i in (1, 3, 5)] for h in hex_colors], dtype=torch.float64)


def checker_uv(uv: Tensor, cells: tuple[int, int], colors: Tensor) -> Tensor:
    """A checkerboard of ``cells`` (along u, along v) squares alternating ``colors`` [2, 3]."""
    cu = torch.floor(uv[..., 0].clamp(0, 1 - 1e-9) * cells[0]).long()
    cv = torch.floor(uv[..., 1].clamp(0, 1 - 1e-9) * cells[1]).long()
    return colors[(cu + cv) % 2]


def checker_3d(pos: Tensor, period: float, colors: Tensor) -> Tensor:
    """A solid 3D checkerboard of cubes of side ``period`` alternating ``colors`` [2, 3]."""
    cell = torch.floor(pos / period).long()
    return colors[cell.sum(-1) % 2]


def stripes(coord: Tensor, period: float, colors: Tensor) -> Tensor:
    """Bands of width ``period`` along the scalar ``coord`` [...], cycling through ``colors`` [K, 3]."""
    return colors[torch.floor(coord / period).long() % len(colors)]


def value_noise(pos: Tensor, frequency: float, seed: int, octaves: int = 3) -> Tensor:
    """Smooth fractal value noise in [0, 1] at ``pos`` [..., 3] (float64 [...]).

    Random values on an integer lattice (a fixed permutation hash of the seed) are
    blended with a smoothstep; octaves double the frequency and halve the amplitude.
    """
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(256, generator=gen)
    table = torch.rand(256, generator=gen, dtype=torch.float64)
    corners = torch.tensor([[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in range(8)])  # [8, 3]
    total, amplitude, norm = torch.zeros(pos.shape[:-1], dtype=torch.float64), 1.0, 0.0
    for octave in range(octaves):
        p = pos * frequency * 2**octave
        base = torch.floor(p)
        frac = p - base
        w = frac * frac * (3 - 2 * frac)  # smoothstep: C1 across lattice cells
        c = (base.long()[..., None, :] + corners) & 255  # [..., 8, 3]
        h = perm[(perm[(perm[c[..., 0]] + c[..., 1]) & 255] + c[..., 2]) & 255]
        weight = torch.where(corners.bool(), w[..., None, :], 1 - w[..., None, :]).prod(-1)  # [..., 8]
        value = (weight * table[h]).sum(-1)
        total, norm, amplitude = total + amplitude * value, norm + amplitude, amplitude / 2
    return total / norm


def blend(t: Tensor, colors: Tensor) -> Tensor:
    """Piecewise-linear colour ramp through ``colors`` [K, 3] at ``t`` [...] in [0, 1]."""
    x = t.clamp(0, 1) * (len(colors) - 1)
    lo = torch.floor(x).long().clamp(max=len(colors) - 2)
    f = (x - lo)[..., None]
    return colors[lo] * (1 - f) + colors[lo + 1] * f


def sample_image(image: Tensor, uv: Tensor) -> Tensor:
    """Bilinear lookup of ``image`` float [H, W, 3] at ``uv`` [..., 2] (u right, v up,
    wrapping in u, clamped in v)."""
    h, w = image.shape[:2]
    x = uv[..., 0] * w - 0.5
    y = (1 - uv[..., 1]) * h - 0.5
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = x0.long(), y0.long()
    xs = (x0 % w, (x0 + 1) % w)
    ys = (y0.clamp(0, h - 1), (y0 + 1).clamp(0, h - 1))
    top = image[ys[0], xs[0]] * (1 - fx) + image[ys[0], xs[1]] * fx
    bottom = image[ys[1], xs[0]] * (1 - fx) + image[ys[1], xs[1]] * fx
    return top * (1 - fy) + bottom * fy
