"""EWA projection of 3-D Gaussians to the image plane (gsplat's pinhole projection).

``project_gaussians`` runs the native kernel (sparse3d._C, analytic backward to means,
quats and scales); ``project_gaussians_ref`` is the pure-torch reference (autograd, also
to viewmats and Ks). Frames: ``viewmats`` map world to OpenCV camera coordinates
(+x right, +y down, +z forward); pixel centres are at integer + 0.5.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from sparse3d._native import HAS_NATIVE
from sparse3d.geometry.rotations import rotmats_from_quats

# gsplat's screen-space extent: 3.33 standard deviations per axis, where a Gaussian of
# opacity 1 falls just below the 1/255 alpha threshold (exp(-3.33^2 / 2) < 1/255).
_RADIUS_SIGMAS = 3.33
# Off-screen points are projected with x/z clamped to 1.3 x the half field of view
# (as 3DGS and gsplat do) so that the affine Jacobian stays bounded near the image border.
_FOV_MARGIN = 0.3
# Radii are stored as int32; larger extents cover any image anyway.
_MAX_RADIUS = float(2**30)


@dataclass(frozen=True)
class Projection:
    """Projected Gaussians for C cameras and N Gaussians."""

    means2d: Tensor
    """float [C, N, 2] pixel coordinates of the centres (x right, y down)."""
    conics: Tensor
    """float [C, N, 3] upper triangle (inv00, inv01, inv11) of the inverse 2-D covariance."""
    depths: Tensor
    """float [C, N] camera-space z."""
    radii: Tensor
    """int32 [C, N, 2] screen extents in pixels (x, y); 0 where the Gaussian is culled."""
    compensations: Tensor
    """float [C, N] sqrt(det(cov2d) / det(cov2d + eps2d I)), the antialiasing factor."""


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """World-frame covariances R S S^T R^T.

    Args:
        quats: float [N, 4] rotations (w, x, y, z), normalised here.
        scales: float [N, 3] standard deviations along the rotated axes.

    Returns:
        float [N, 3, 3] symmetric positive semi-definite covariances.
    """
    m = rotmats_from_quats(quats) * scales[..., None, :]
    return m @ m.transpose(-1, -2)


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near_plane: float,
    far_plane: float,
    eps2d: float,
    radius_clip: float,
) -> Projection:
    """Projects Gaussians into C pinhole cameras with the native kernel.

    Same arguments and result as :func:`project_gaussians_ref`; differentiable with
    respect to ``means``, ``quats`` and ``scales`` (not ``viewmats`` or ``Ks``).
    """
    return Projection(
        *torch.ops.sparse3d.gaussian_project(
            means, quats, scales, viewmats, Ks, width, height, near_plane, far_plane, eps2d, radius_clip
        )
    )


def project_gaussians_ref(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near_plane: float,
    far_plane: float,
    eps2d: float,
    radius_clip: float,
) -> Projection:
    """Projects Gaussians into C pinhole cameras (EWA splatting with an eps2d low-pass).

    A Gaussian is culled (radii 0) when its z is outside (near, far), its blurred 2-D
    covariance is not positive definite, its box misses the image, or both radii are at
    most ``radius_clip``. Culled entries still hold finite values, and no gradient flows
    through them into the render.

    Args:
        means: float [N, 3] world-frame centres.
        quats: float [N, 4] rotations (w, x, y, z), normalised here.
        scales: float [N, 3] standard deviations along the rotated axes.
        viewmats: float [C, 4, 4] world-to-camera transforms (OpenCV axes).
        Ks: float [C, 3, 3] intrinsics in pixels.
        width, height: image size W, H in pixels.
        near_plane, far_plane, eps2d, radius_clip: as in :class:`RasterConfig`.

    Returns:
        The :class:`Projection`, every field [C, N, ...].
    """
    covars = quat_scale_to_covar(quats, scales)
    rot, trans = viewmats[:, None, :3, :3], viewmats[:, None, :3, 3]  # [C, 1, 3, 3], [C, 1, 3]
    means_c = (rot @ means[None, :, :, None])[..., 0] + trans  # [C, N, 3]
    covars_c = rot @ covars[None] @ rot.transpose(-1, -2)  # [C, N, 3, 3]
    x, y, z = means_c.unbind(-1)
    in_depth = (z > near_plane) & (z < far_plane)
    # Culled Gaussians get z = 1 so that no inf/NaN reaches the masked gradients.
    z = torch.where(in_depth, z, torch.ones_like(z))
    fx, fy, cx, cy = (Ks[:, None, 0, 0], Ks[:, None, 1, 1], Ks[:, None, 0, 2], Ks[:, None, 1, 2])
    lim_x = (cx / fx + _FOV_MARGIN * 0.5 * width / fx, (width - cx) / fx + _FOV_MARGIN * 0.5 * width / fx)
    lim_y = (cy / fy + _FOV_MARGIN * 0.5 * height / fy, (height - cy) / fy + _FOV_MARGIN * 0.5 * height / fy)
    tx = z * torch.clamp(x / z, -lim_x[0], lim_x[1])
    ty = z * torch.clamp(y / z, -lim_y[0], lim_y[1])
    zeros = torch.zeros_like(z)
    jac = torch.stack(
        [fx / z, zeros, -fx * tx / (z * z), zeros, fy / z, -fy * ty / (z * z)], dim=-1
    ).reshape(*z.shape, 2, 3)
    cov2d = jac @ covars_c @ jac.transpose(-1, -2)  # [C, N, 2, 2]
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)

    det_raw = cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]
    a, b, c = cov2d[..., 0, 0] + eps2d, 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]), cov2d[..., 1, 1] + eps2d
    det = a * c - b * b
    valid = in_depth & (det > 0)
    det = torch.where(valid, det, torch.ones_like(det))
    compensations = torch.sqrt(torch.clamp_min(det_raw / det, 0.0))
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)

    radii = _screen_radii(a.detach(), c.detach(), means2d.detach(), valid, width, height, radius_clip)
    return Projection(means2d, conics, means_c[..., 2], radii, compensations)


def _screen_radii(
    var_x: Tensor, var_y: Tensor, means2d: Tensor, valid: Tensor, width: int, height: int, radius_clip: float
) -> Tensor:
    """int32 [C, N, 2] per-axis radii, zeroed for culled or off-image Gaussians."""
    var = torch.stack([var_x, var_y], dim=-1)
    radii = torch.ceil(_RADIUS_SIGMAS * torch.sqrt(torch.clamp_min(var, 0.0)))
    size = means2d.new_tensor([width, height])
    inside = ((means2d + radii > 0) & (means2d - radii < size)).all(dim=-1)
    keep = valid & inside & (radii > radius_clip).any(dim=-1) & torch.isfinite(radii).all(dim=-1)
    radii = torch.where(keep[..., None], radii.clamp(max=_MAX_RADIUS), torch.zeros_like(radii))
    return radii.to(torch.int32)


if HAS_NATIVE:

    @torch.library.register_fake("sparse3d::gaussian_project")
    def _(means, quats, scales, viewmats, Ks, width, height, near_plane, far_plane, eps2d, radius_clip):
        C, N = viewmats.shape[0], means.shape[0]
        return (
            means.new_empty(C, N, 2),
            means.new_empty(C, N, 3),
            means.new_empty(C, N),
            means.new_empty(C, N, 2, dtype=torch.int32),
            means.new_empty(C, N),
        )

    @torch.library.register_fake("sparse3d::gaussian_project_bwd")
    def _(means, quats, scales, viewmats, Ks, width, height, near_plane, far_plane, eps2d, radii,
          v_means2d, v_conics, v_depths, v_compensations):
        return torch.empty_like(means), torch.empty_like(quats), torch.empty_like(scales)

    def _setup_context(ctx, inputs, output):
        means, quats, scales, viewmats, Ks, width, height, near_plane, far_plane, eps2d, _ = inputs
        ctx.options = (width, height, near_plane, far_plane, eps2d)
        ctx.save_for_backward(means, quats, scales, viewmats, Ks, output[3])

    def _backward(ctx, v_means2d, v_conics, v_depths, _v_radii, v_compensations):
        means, quats, scales, viewmats, Ks, radii = ctx.saved_tensors
        C, N = radii.shape[:2]
        grads = [
            g if g is not None else means.new_zeros(shape)
            for g, shape in ((v_means2d, (C, N, 2)), (v_conics, (C, N, 3)), (v_depths, (C, N)), (v_compensations, (C, N)))
        ]
        v_means, v_quats, v_scales = torch.ops.sparse3d.gaussian_project_bwd(
            means, quats, scales, viewmats, Ks, *ctx.options, radii, *grads
        )
        # viewmats, Ks and the 6 options get no gradient (the reference path covers camera gradients)
        return v_means, v_quats, v_scales, None, None, None, None, None, None, None, None

    torch.library.register_autograd("sparse3d::gaussian_project", _backward, setup_context=_setup_context)
