"""Optimiser schedules that are functions of the step alone (so a resumed run follows an
uninterrupted one exactly), applied by a method's "before_step" training callback."""

import math
from dataclasses import dataclass, field

import torch

from sparse3d.engine.config import at_least, between, check_ranges, positive


@dataclass
class OneCycleConfig:
    """Adam with decoupled weight decay under a one-cycle schedule (OpenPCDet's
    ``adam_onecycle``, fastai's one-cycle policy), and gradient-norm clipping."""

    lr: float = field(default=1e-3, metadata=positive())
    """Peak learning rate."""
    div_factor: float = field(default=10.0, metadata=at_least(1))
    """The learning rate starts at ``lr / div_factor`` and ends at ``lr / div_factor / 1e4``."""
    pct_start: float = field(default=0.4, metadata=between(0, 1))
    """Fraction of the steps spent rising to the peak."""
    moms: tuple[float, float] = (0.95, 0.85)
    """Adam's beta1 at the start (and end) and at the peak: momentum falls while the
    learning rate rises."""
    beta2: float = field(default=0.99, metadata=between(0, 1))
    """Adam's beta2."""
    weight_decay: float = field(default=0.01, metadata=at_least(0))
    """Decoupled (AdamW-style) weight decay, applied to every parameter."""
    grad_norm_clip: float = field(default=10.0, metadata=at_least(0))
    """Clip the global gradient norm to this (0: no clipping)."""

    def __post_init__(self) -> None:
        check_ranges(self)


def _cosine(start: float, end: float, pct: float) -> float:
    """Cosine interpolation from ``start`` (pct 0) to ``end`` (pct 1)."""
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


def one_cycle(step: int, total_steps: int, config: OneCycleConfig) -> tuple[float, float]:
    """(learning rate, beta1) of step ``step`` of ``total_steps``: both move along cosines,
    the learning rate from lr / div up to lr over the first ``pct_start`` of the steps,
    then down to lr / div / 1e4; beta1 the opposite way between ``moms``."""
    low = config.lr / config.div_factor
    rise = int(config.pct_start * total_steps)
    (high_mom, low_mom) = config.moms
    if step < rise:
        pct = step / rise
        return _cosine(low, config.lr, pct), _cosine(high_mom, low_mom, pct)
    pct = (step - rise) / max(total_steps - rise, 1)
    return _cosine(config.lr, low / 1e4, pct), _cosine(low_mom, high_mom, pct)


def set_one_cycle(optimizers: dict[str, torch.optim.Optimizer], step: int, total_steps: int, config: OneCycleConfig) -> None:
    """Sets every group's learning rate and beta1 to their values at ``step``."""
    lr, beta1 = one_cycle(step, total_steps, config)
    for optimizer in optimizers.values():
        for group in optimizer.param_groups:
            group["lr"], group["betas"] = lr, (beta1, config.beta2)


def one_cycle_group(name: str, params, config: OneCycleConfig) -> dict:
    """A parameter group (engine format) for Adam with decoupled weight decay; its learning
    rate and betas are set by :func:`set_one_cycle` before every step."""
    lr, beta1 = one_cycle(0, 1, config)
    return {"name": name, "params": list(params), "lr": lr, "betas": (beta1, config.beta2),
            "weight_decay": config.weight_decay, "decoupled_weight_decay": True}


def clip_gradients(optimizers: dict[str, torch.optim.Optimizer], max_norm: float) -> None:
    """Scales all gradients so that their global L2 norm is at most ``max_norm`` (0: no-op)."""
    if max_norm <= 0:
        return
    params = [p for o in optimizers.values() for g in o.param_groups for p in g["params"] if p.grad is not None]
    torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=False)
