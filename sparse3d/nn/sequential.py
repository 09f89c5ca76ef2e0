"""SparseModule and SparseSequential: containers that pass SparseVoxels between layers.

As in spconv, a plain module inside ``SparseSequential`` (``nn.BatchNorm1d``, ``nn.ReLU``,
...) is applied to the features ``[N, C]``; the sites and the kernel-map cache flow on.
A ``SparseBatchNorm1d`` followed by ``nn.ReLU`` runs as one fused pass.
"""

from torch import nn

from sparse3d.core.sparse_voxels import SparseVoxels
from sparse3d.nn.norm import SparseBatchNorm1d


class SparseModule(nn.Module):
    """Base class of modules that take and return SparseVoxels."""


class SparseSequential(nn.Sequential, SparseModule):
    """``nn.Sequential`` over SparseVoxels; non-sparse modules act on ``feats``.

    Examples:
        >>> from sparse3d.nn.conv import SubMConv3d
        >>> net = SparseSequential(SubMConv3d(4, 16, 3, bias=False), nn.BatchNorm1d(16), nn.ReLU())
    """

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        modules = list(self)
        i = 0
        while i < len(modules):
            module = modules[i]
            if isinstance(module, SparseModule):
                x = module(x)
            elif _is_bn_relu(module, modules[i + 1] if i + 1 < len(modules) else None):
                x = x.replace_feats(module.normalize(x.feats, relu=True))  # one pass, not two
                i += 1
            else:
                x = x.replace_feats(module(x.feats))
            i += 1
        return x


def _is_bn_relu(module: nn.Module, following: nn.Module | None) -> bool:
    return isinstance(module, SparseBatchNorm1d) and type(following) is nn.ReLU
