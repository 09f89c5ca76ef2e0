"""Edits of Gaussian parameters that keep each optimizer's state rows aligned with them.

Parameters are a dict of ``torch.nn.Parameter`` keyed by name (``means`` [N, 3],
``scales`` [N, 3] log-scales, ``quats`` [N, 4], ``opacities`` [N] logits, colour or SH
tensors [N, ...]), with one optimizer per name holding exactly that parameter. Every edit
replaces the parameter and rewrites the per-row optimizer state (e.g. Adam's
``exp_avg``/``exp_avg_sq``) the same way; scalar state such as ``step`` is kept.
"""

from collections.abc import Callable, Mapping, MutableMapping

import torch
from torch import Tensor

from sparse3d.core.elementwise import sigmoid
from sparse3d.geometry.rotations import rotmats_from_quats
from sparse3d.render.gaussians.projection import quat_scale_to_covar

Params = MutableMapping[str, torch.nn.Parameter]
Optimizers = Mapping[str, torch.optim.Optimizer]


def check_params_and_optimizers(params: Params, optimizers: Optimizers, required: tuple[str, ...]) -> None:
    """Raises ValueError unless every parameter has one optimizer holding only it."""
    missing = [k for k in required if k not in params]
    if missing:
        raise ValueError(f"densification: params lack {missing}; got {sorted(params)}")
    n = params["means"].shape[0]
    for name, p in params.items():
        if p.shape[0] != n:
            raise ValueError(f"densification: params[{name!r}] has {p.shape[0]} rows, means has {n}")
        opt = optimizers.get(name)
        if opt is None:
            raise ValueError(f"densification: no optimizer for params[{name!r}]; got {sorted(optimizers)}")
        if len(opt.param_groups) != 1 or len(opt.param_groups[0]["params"]) != 1 or opt.param_groups[0]["params"][0] is not p:
            raise ValueError(f"densification: optimizers[{name!r}] must hold exactly params[{name!r}]")


def edit_rows(
    params: Params,
    optimizers: Optimizers,
    param_fn: Callable[[str, Tensor], Tensor],
    state_fn: Callable[[str, Tensor], Tensor],
    names: tuple[str, ...] | None = None,
) -> None:
    """Replaces ``params[name]`` by ``param_fn(name, old)`` and every per-row optimizer state
    tensor by ``state_fn(name, old_state)``, for each name (default: all)."""
    for name in names if names is not None else tuple(params):
        old = params[name]
        new = torch.nn.Parameter(param_fn(name, old.detach()), requires_grad=old.requires_grad)
        opt = optimizers[name]
        state = opt.state.pop(old, {})
        for key, value in state.items():
            if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == old.shape[0]:
                state[key] = state_fn(name, value)
        opt.param_groups[0]["params"] = [new]
        if state:
            opt.state[new] = state
        params[name] = new


def duplicate(params: Params, optimizers: Optimizers, mask: Tensor) -> None:
    """Appends a copy of the Gaussians selected by bool ``mask`` [N]; their state starts at 0."""
    idx = mask.nonzero().squeeze(1)
    edit_rows(
        params, optimizers,
        lambda _, p: torch.cat([p, p[idx]]),
        lambda _, v: torch.cat([v, v.new_zeros((idx.numel(), *v.shape[1:]))]),
    )


def split(params: Params, optimizers: Optimizers, mask: Tensor, revised_opacity: bool = False) -> None:
    """Replaces each selected Gaussian by two, sampled from its own distribution, with
    scales divided by 1.6 (3DGS); the children go to the end, their state starts at 0.

    With ``revised_opacity`` the children get 1 - sqrt(1 - opacity) ("Revising
    densification in Gaussian splatting", Rota Bulo et al. 2024).
    """
    sel = mask.nonzero().squeeze(1)
    rest = (~mask).nonzero().squeeze(1)
    scales = torch.exp(params["scales"][sel].detach())  # [S, 3]
    # x = R (s * z) with z ~ N(0, I) samples N(0, R S^2 R^T) without factorising the
    # covariance, which fails in float32 for very flat Gaussians.
    rotmats = rotmats_from_quats(params["quats"][sel].detach())  # [S, 3, 3]
    noise = torch.randn(2, sel.numel(), 3, dtype=scales.dtype, device=scales.device)
    offsets = (rotmats[None] @ (scales[None] * noise)[..., None])[..., 0]  # [2, S, 3]

    def children(name: str, p: Tensor) -> Tensor:
        if name == "means":
            new = (p[sel][None] + offsets).reshape(-1, 3)
        elif name == "scales":
            new = torch.log(scales / 1.6).repeat(2, 1)
        elif name == "opacities" and revised_opacity:
            new = torch.logit(1.0 - torch.sqrt(1.0 - sigmoid(p[sel])), eps=1e-6).repeat(2)
        else:
            new = p[sel].repeat(2, *([1] * (p.dim() - 1)))
        return torch.cat([p[rest], new])

    edit_rows(
        params, optimizers, children,
        lambda _, v: torch.cat([v[rest], v.new_zeros((2 * sel.numel(), *v.shape[1:]))]),
    )


def remove(params: Params, optimizers: Optimizers, mask: Tensor) -> None:
    """Deletes the Gaussians selected by bool ``mask`` [N], with their optimizer rows."""
    keep = (~mask).nonzero().squeeze(1)
    edit_rows(params, optimizers, lambda _, p: p[keep], lambda _, v: v[keep])


def reset_opacity(params: Params, optimizers: Optimizers, value: float) -> None:
    """Clamps every opacity to at most ``value`` and zeroes the opacity optimizer state."""
    cap = torch.logit(torch.tensor(value)).item()
    edit_rows(
        params, optimizers,
        lambda _, p: torch.clamp_max(p, cap),
        lambda _, v: torch.zeros_like(v),
        names=("opacities",),
    )


def relocation_targets(opacities: Tensor, scales: Tensor, copies: Tensor, max_copies: int = 51) -> tuple[Tensor, Tensor]:
    """Opacity and scale for each of ``copies`` Gaussians replacing one (3DGS-MCMC, eq. 9).

    The copies' opacity o' satisfies 1 - (1 - o')^n = o, and the scale is chosen so that
    the summed (unnormalised) density of the n overlapping copies matches the original at
    its centre: s' = o / (sum_i=1..n sum_k=0..i-1 C(i-1, k) (-1)^k o'^(k+1) / sqrt(k + 1)) s.

    Args:
        opacities: float [M] in (0, 1).
        scales: float [M, 3] (not log).
        copies: int64 [M] >= 1, clamped to ``max_copies``.

    Returns:
        new opacities float [M], new scales float [M, 3].
    """
    n = copies.clamp(1, max_copies)
    new_opacities = 1.0 - torch.pow(1.0 - opacities, 1.0 / n.to(opacities.dtype))
    i = torch.arange(1, max_copies + 1, dtype=opacities.dtype, device=opacities.device)  # [I]
    k = torch.arange(max_copies, dtype=opacities.dtype, device=opacities.device)  # [K]
    binom = torch.exp(torch.lgamma(i[:, None]) - torch.lgamma(k[None] + 1) - torch.lgamma(i[:, None] - k[None]))
    binom = torch.where(k[None] < i[:, None], binom, torch.zeros_like(binom))  # C(i-1, k), [I, K]
    terms = (-1.0) ** k / torch.sqrt(k + 1) * new_opacities[:, None] ** (k + 1)  # [M, K]
    per_i = terms @ binom.T  # [M, I]
    used = i[None] <= n[:, None].to(i.dtype)
    denom = torch.where(used, per_i, torch.zeros_like(per_i)).sum(dim=1)
    return new_opacities, scales * (opacities / denom)[:, None]


def relocate(params: Params, optimizers: Optimizers, dead: Tensor, eps: float = 1e-7) -> None:
    """Moves the ``dead`` (bool [N]) Gaussians onto live ones sampled in proportion to
    opacity; the sampled sources and their copies share the opacity and scale from
    :func:`relocation_targets`, and the sources' optimizer rows are zeroed."""
    dead_idx = dead.nonzero().squeeze(1)
    alive_idx = (~dead).nonzero().squeeze(1)
    if dead_idx.numel() == 0 or alive_idx.numel() == 0:
        return
    probs = sigmoid(params["opacities"].detach()[alive_idx])
    sampled = alive_idx[torch.multinomial(probs, dead_idx.numel(), replacement=True)]
    _respread(params, optimizers, sampled, targets=dead_idx)


def sample_add(params: Params, optimizers: Optimizers, n_new: int) -> None:
    """Appends ``n_new`` Gaussians copied from ones sampled in proportion to opacity,
    splitting opacity and scale between source and copies as :func:`relocate` does."""
    if n_new <= 0:
        return
    probs = sigmoid(params["opacities"].detach())
    sampled = torch.multinomial(probs, n_new, replacement=True)
    _respread(params, optimizers, sampled, targets=None)


def _respread(params: Params, optimizers: Optimizers, sampled: Tensor, targets: Tensor | None) -> None:
    """Gives every sampled source (with repeats) and its copies the relocated opacity and
    scale, then writes the copies over ``targets`` rows, or appends them when None."""
    n = params["means"].shape[0]
    copies = torch.bincount(sampled, minlength=n)[sampled] + 1
    opacities, scales = relocation_targets(
        sigmoid(params["opacities"].detach()[sampled]), torch.exp(params["scales"].detach()[sampled]), copies
    )
    new_rows = {"opacities": torch.logit(opacities.clamp(1e-6, 1.0 - 1e-6)), "scales": torch.log(scales)}

    def write(name: str, p: Tensor) -> Tensor:
        p = p.clone()
        src = new_rows.get(name, p[sampled])
        p[sampled] = src
        if targets is None:
            return torch.cat([p, src])
        p[targets] = src
        return p

    def state(_, v: Tensor) -> Tensor:
        v = v.clone()
        v[sampled] = 0
        if targets is None:
            return torch.cat([v, v.new_zeros((sampled.numel(), *v.shape[1:]))])
        v[targets] = 0
        return v

    edit_rows(params, optimizers, write, state)


def inject_noise_to_position(params: Params, scaler: float) -> None:
    """Adds Sigma-shaped noise to the centres of nearly transparent Gaussians:
    means += scaler * sigmoid(100 ((1 - o) - 0.995)) * Sigma z, z ~ N(0, I)
    (3DGS-MCMC's SGLD step as gsplat implements it; optimizer state is untouched)."""
    opacities = sigmoid(params["opacities"].detach())
    covars = quat_scale_to_covar(params["quats"].detach(), torch.exp(params["scales"].detach()))
    gate = sigmoid(100.0 * ((1.0 - opacities) - 0.995))  # [N], ~1 only for o < 0.005
    noise = (covars @ torch.randn_like(params["means"])[..., None])[..., 0]
    with torch.no_grad():
        params["means"].add_(noise * gate[:, None] * scaler)
