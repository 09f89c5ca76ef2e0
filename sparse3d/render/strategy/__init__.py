"""Densification strategies for Gaussian splatting, each a config dataclass plus a state
held by the caller (gsplat's design): ``default`` (3DGS clone / split / prune / reset) and
``mcmc`` (3DGS-MCMC relocation). ``ops`` edits parameters and optimizer state together."""

from sparse3d.render.strategy.default import DefaultState, DefaultStrategy
from sparse3d.render.strategy.mcmc import MCMCState, MCMCStrategy

__all__ = ["DefaultState", "DefaultStrategy", "MCMCState", "MCMCStrategy"]
