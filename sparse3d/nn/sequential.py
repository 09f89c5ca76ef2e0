"""SparseModule and SparseSequential: containers that pass SparseVoxels between layers.

As in spconv, a plain module inside ``SparseSequential`` (``nn.BatchNorm1d``, ``nn.ReLU``,
...) is applied to the features ``[N, C]``; the sites and the kernel-map cache flow on.
"""

from torch import nn

from sparse3d.core.sparse_voxels import SparseVoxels


class SparseModule(nn.Module):
    """Base class of modules that take and return SparseVoxels."""


class SparseSequential(nn.Sequential, SparseModule):
    """``nn.Sequential`` over SparseVoxels; non-sparse modules act on ``feats``.

    Examples:
        >>> from sparse3d.nn.conv import SubMConv3d
        >>> net = SparseSequential(SubMConv3d(4, 16, 3, bias=False), nn.BatchNorm1d(16), nn.ReLU())
    """

    def forward(self, x: SparseVoxels) -> SparseVoxels:
        for module in self:
            x = module(x) if isinstance(module, SparseModule) else x.replace_feats(module(x.feats))
        return x
