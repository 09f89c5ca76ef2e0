"""Front-to-back alpha compositing of projected Gaussians (gsplat's rasterize_to_pixels).

Per pixel, in depth order: alpha_i = min(0.999, o_i exp(-sigma_i)), skipped when sigma_i < 0
or alpha_i < 1/255; the pixel stops before the Gaussian that would bring its transmittance
T to 1e-4 or below; colour = sum_i alpha_i T_i c_i, alpha = 1 - T_final.

``rasterize_to_pixels`` runs the native kernel (sparse3d._C, analytic backward);
``rasterize_to_pixels_ref`` is the tile-chunked pure-torch reference (autograd backward).
"""

import torch
from torch import Tensor

from sparse3d._native import HAS_NATIVE
from sparse3d.render.gaussians.tiles import TileBins, tile_grid, tile_rects

_ALPHA_MAX = 0.999
_ALPHA_MIN = 1.0 / 255.0
_T_MIN = 1e-4
# Beyond this sigma alpha < exp(-30) is skipped anyway; clamping keeps exp away from
# denormals (very slow on CPU) and from inf for numerically negative sigma.
_SIGMA_MAX = 30.0
# Gaussians composited at once per tile by the reference: [256 px, 512] pairs keep its
# autograd memory near 10 MB per chunk, and let saturated tiles stop early.
_REF_CHUNK = 512


def rasterize_to_pixels(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    bins: TileBins,
    width: int,
    height: int,
    tile_size: int,
) -> tuple[Tensor, Tensor]:
    """Composites C images with the native kernel (differentiable).

    Args:
        means2d: float [C, N, 2] pixel centres.
        conics: float [C, N, 3] inverse 2-D covariances (inv00, inv01, inv11).
        colors: float [C, N, D] per-camera colours (any D >= 1).
        opacities: float [C, N] in [0, 1].
        bins: the tile intersections from :func:`bin_gaussians`.
        width, height, tile_size: image and tile size in pixels.

    Returns:
        render: float [C, H, W, D]; alphas: float [C, H, W, 1].
        After backward, ``means2d.absgrad`` holds float [C, N, 2], the sum over pixels of
        the absolute per-pixel gradients (AbsGS), as gsplat does.
    """
    render, alphas, _ = torch.ops.sparse3d.gaussian_rasterize(
        means2d, conics, colors, opacities, bins.tile_offsets, bins.flatten_ids, width, height, tile_size
    )
    return render, alphas


def rasterize_to_pixels_ref(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    radii: Tensor,
    depths: Tensor,
    width: int,
    height: int,
    tile_size: int,
) -> tuple[Tensor, Tensor]:
    """Pure-torch reference of :func:`rasterize_to_pixels`.

    Tiles are composited one at a time with an exclusive cumulative product over the
    depth-sorted Gaussians whose screen box overlaps the tile, in chunks that carry T.

    Args:
        means2d, conics, colors, opacities: as :func:`rasterize_to_pixels`.
        radii: int32 [C, N, 2] screen radii; 0 means culled.
        depths: float [C, N] camera-space z, the compositing order.
        width, height, tile_size: image and tile size in pixels.

    Returns:
        render: float [C, H, W, D]; alphas: float [C, H, W, 1].
    """
    C, _, D = colors.shape
    tiles_x, tiles_y = tile_grid(width, height, tile_size)
    rects = tile_rects(means2d, radii, width, height, tile_size)  # [C, N, 4]
    offs = torch.arange(tile_size, device=means2d.device, dtype=means2d.dtype) + 0.5
    renders, alphas = [], []
    for cam in range(C):
        order = torch.argsort(depths[cam].detach(), stable=True)
        order = order[(rects[cam, order, 1] > rects[cam, order, 0])]
        r = rects[cam, order]
        tiles = []
        for ty in range(tiles_y):
            for tx in range(tiles_x):
                hit = (r[:, 0] <= tx) & (tx < r[:, 1]) & (r[:, 2] <= ty) & (ty < r[:, 3])
                ids = order[hit]
                py, px = torch.meshgrid(offs + ty * tile_size, offs + tx * tile_size, indexing="ij")
                tiles.append(
                    _composite_tile(
                        px.reshape(-1), py.reshape(-1), means2d[cam, ids], conics[cam, ids],
                        colors[cam, ids], opacities[cam, ids],
                    )
                )
        color = torch.stack([t[0] for t in tiles]).reshape(tiles_y, tiles_x, tile_size, tile_size, D)
        trans = torch.stack([t[1] for t in tiles]).reshape(tiles_y, tiles_x, tile_size, tile_size, 1)
        renders.append(_untile(color)[:height, :width])
        alphas.append(1.0 - _untile(trans)[:height, :width])
    return torch.stack(renders), torch.stack(alphas)


def _untile(x: Tensor) -> Tensor:
    """[ty, tx, s, s, D] tiles to a [ty * s, tx * s, D] image."""
    ty, tx, s, _, d = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(ty * s, tx * s, d)


def _composite_tile(
    px: Tensor, py: Tensor, means2d: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor
) -> tuple[Tensor, Tensor]:
    """Composites K depth-sorted Gaussians over P pixel centres: colour [P, D], final T [P].

    Gaussians go in chunks that carry T; a pixel is done once a Gaussian was dropped for
    bringing T to 1e-4, and the tile stops when every pixel is done.
    """
    P, K = px.shape[0], means2d.shape[0]
    color = px.new_zeros(P, colors.shape[1])
    trans = px.new_ones(P)
    done = torch.zeros(P, dtype=torch.bool, device=px.device)
    for k0 in range(0, K, _REF_CHUNK):
        sl = slice(k0, k0 + _REF_CHUNK)
        dx = means2d[None, sl, 0] - px[:, None]  # [P, k]
        dy = means2d[None, sl, 1] - py[:, None]
        a, b, c = conics[sl].unbind(-1)
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp(opacities[sl] * torch.exp(-sigma.clamp(0.0, _SIGMA_MAX)), max=_ALPHA_MAX)
        visible = (sigma >= 0) & (alpha >= _ALPHA_MIN) & ~done[:, None]
        alpha = torch.where(visible, alpha, torch.zeros_like(alpha))
        with torch.no_grad():
            # T after each Gaussian; the first one at or below T_MIN, and all later, are dropped.
            keep = trans[:, None] * torch.cumprod(1.0 - alpha, dim=1) > _T_MIN
            done = done | (visible & ~keep).any(dim=1)
        alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
        through = torch.cumprod(1.0 - alpha, dim=1)  # [P, k] inclusive transmittance
        before = trans[:, None] * torch.cat([torch.ones_like(through[:, :1]), through[:, :-1]], dim=1)
        color = color + (alpha * before) @ colors[sl]
        trans = trans * through[:, -1]
        if bool(done.all()):
            break
    return color, trans


if HAS_NATIVE:

    @torch.library.register_fake("sparse3d::gaussian_rasterize")
    def _(means2d, conics, colors, opacities, tile_offsets, flatten_ids, width, height, tile_size):
        C, D = colors.shape[0], colors.shape[2]
        return (
            colors.new_empty(C, height, width, D),
            colors.new_empty(C, height, width, 1),
            colors.new_empty(C, height, width, dtype=torch.int32),
        )

    @torch.library.register_fake("sparse3d::gaussian_rasterize_bwd")
    def _(means2d, conics, colors, opacities, tile_offsets, flatten_ids, width, height, tile_size,
          alphas, last_ids, v_render, v_alphas):
        return (
            torch.empty_like(means2d),
            torch.empty_like(conics),
            torch.empty_like(colors),
            torch.empty_like(opacities),
            torch.empty_like(means2d),
        )

    def _setup_context(ctx, inputs, output):
        means2d, conics, colors, opacities, tile_offsets, flatten_ids, width, height, tile_size = inputs
        _, alphas, last_ids = output
        ctx.size = (width, height, tile_size)
        # Kept as an attribute (not saved) only to attach the AbsGS gradient to it.
        ctx.means2d = means2d
        ctx.save_for_backward(means2d, conics, colors, opacities, tile_offsets, flatten_ids, alphas, last_ids)

    def _backward(ctx, v_render, v_alphas, _v_last_ids):
        means2d, conics, colors, opacities, tile_offsets, flatten_ids, alphas, last_ids = ctx.saved_tensors
        if v_render is None:
            v_render = colors.new_zeros(*alphas.shape[:-1], colors.shape[-1])
        if v_alphas is None:
            v_alphas = torch.zeros_like(alphas)
        v_means2d, v_conics, v_colors, v_opacities, v_abs = torch.ops.sparse3d.gaussian_rasterize_bwd(
            means2d, conics, colors, opacities, tile_offsets, flatten_ids, *ctx.size, alphas, last_ids,
            v_render, v_alphas,
        )
        ctx.means2d.absgrad = v_abs
        # tile_offsets, flatten_ids, width, height and tile_size are not differentiable
        return v_means2d, v_conics, v_colors, v_opacities, None, None, None, None, None

    torch.library.register_autograd("sparse3d::gaussian_rasterize", _backward, setup_context=_setup_context)
