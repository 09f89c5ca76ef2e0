"""Real spherical harmonics up to degree 3, in the 3DGS / gsplat basis and sign convention."""

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814
"""The degree-0 SH basis, 1 / (2 sqrt(pi)): rgb = SH_C0 * sh0 + 0.5."""
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)
MAX_SH_DEGREE = 3


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients per channel for bands 0..degree: (degree + 1)^2."""
    return (degree + 1) ** 2


def sh_bases(degree: int, dirs: Tensor) -> Tensor:
    """Evaluates the real SH basis functions on unit directions.

    Args:
        degree: 0..3.
        dirs: float [..., 3] unit vectors.

    Returns:
        float [..., (degree + 1)^2], orthonormal over the sphere.
    """
    x, y, z = dirs.unbind(-1)
    bases = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        bases += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        bases += [
            _C2[0] * x * y,
            _C2[1] * y * z,
            _C2[2] * (2.0 * zz - xx - yy),
            _C2[3] * x * z,
            _C2[4] * (xx - yy),
        ]
    if degree >= 3:
        bases += [
            _C3[0] * y * (3.0 * xx - yy),
            _C3[1] * x * y * z,
            _C3[2] * y * (4.0 * zz - xx - yy),
            _C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            _C3[4] * x * (4.0 * zz - xx - yy),
            _C3[5] * z * (xx - yy),
            _C3[6] * x * (xx - 3.0 * yy),
        ]
    return torch.stack(bases, dim=-1)


def sh_to_color(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Colours seen along view directions, as gsplat: max(SH(dirs) . coeffs + 0.5, 0).

    Args:
        degree: bands used, 0..3; coefficients beyond (degree + 1)^2 are ignored.
        dirs: float [..., 3] view directions (camera centre to Gaussian, world frame),
            not necessarily normalised.
        coeffs: float [..., K, D] SH coefficients, K >= (degree + 1)^2.

    Returns:
        float [..., D] non-negative colours.
    """
    bases = sh_bases(degree, torch.nn.functional.normalize(dirs, dim=-1))
    value = (bases[..., None] * coeffs[..., : bases.shape[-1], :]).sum(dim=-2)
    return torch.clamp_min(value + 0.5, 0.0)
