"""SparseVoxels: the sparse voxel tensor that flows between layers.

It carries int32 coordinates, features, the grid shape and batch size, plus a cache shared
by every tensor derived from the same input: kernel maps keyed by (coordinate set, kernel,
stride, padding, dilation), and spconv-style ``indice_key`` records so that an inverse
conv restores exactly the input sites of the strided conv it names.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count

from torch import Tensor

from sparse3d.core.coords import (
    Triple,
    as_triple,
    conv_output_shape,
    transposed_conv_output_shape,
    validate_coords,
)
from sparse3d.core.kernel_map import KernelMap, conv_map, kernel_map


@dataclass(frozen=True)
class ConvKey:
    """Cache key of a kernel map: which coordinate set, and the conv geometry."""

    coord_set: int
    """Id of the input coordinate set (unique within one VoxelCache)."""
    kernel: Triple
    """Kernel size per axis."""
    stride: Triple
    """Stride per axis (1 for submanifold maps)."""
    padding: Triple
    """Padding per axis (k // 2 * d for submanifold maps)."""
    dilation: Triple
    """Dilation per axis."""
    submanifold: bool
    """True for a submanifold map (outputs = inputs)."""
    transposed: bool = False
    """True for a transposed (coordinate-generating) conv's map."""
    output_padding: Triple = (0, 0, 0)
    """Extra cells at the high end of each axis of a transposed conv's output grid."""


@dataclass
class IndiceRecord:
    """What a strided conv registered under an ``indice_key`` leaves for its inverse."""

    in_coords: Tensor
    """int32 [N, 4] input sites of the strided conv (the inverse conv's output sites)."""
    in_shape: Triple
    """Spatial shape of the strided conv's input grid."""
    in_coord_set: int
    """Coordinate-set id of those input sites."""
    kmap: KernelMap
    """The strided conv's kernel map."""


@dataclass
class VoxelCache:
    """Kernel maps and ``indice_key`` records shared by every tensor derived from one input."""

    kernel_maps: dict[ConvKey, KernelMap] = field(default_factory=dict)
    """Kernel maps built so far."""
    indice_keys: dict[str, IndiceRecord] = field(default_factory=dict)
    """Strided convs registered by ``indice_key``."""
    _ids: count = field(default_factory=count, repr=False)

    def new_coord_set(self) -> int:
        """A fresh coordinate-set id."""
        return next(self._ids)


class SparseVoxels:
    """Sparse voxel features on a batched 3-D grid.

    Attributes:
        coords: int32 [N, 4] (batch, x, y, z) — or any axis order, as long as
            ``spatial_shape`` and the conv kernels use the same one.
        feats: float [N, C].
        spatial_shape: (S0, S1, S2) grid size.
        batch_size: number of samples B; batch indices lie in [0, B).

    Examples:
        >>> coords = torch.tensor([[0, 1, 2, 3], [0, 4, 4, 4]], dtype=torch.int32)
        >>> x = SparseVoxels(coords, torch.randn(2, 8), (8, 8, 8), batch_size=1)
        >>> x.dense().shape
        torch.Size([1, 8, 8, 8, 8])
    """

    def __init__(
        self,
        coords: Tensor,
        feats: Tensor,
        spatial_shape: Sequence[int],
        batch_size: int,
        *,
        check: bool = True,
        cache: VoxelCache | None = None,
        coord_set: int | None = None,
    ):
        """Args:
        coords, feats, spatial_shape, batch_size: see the class attributes.
        check: validate coordinates (dtype, range, batch, duplicates) and features.
        cache: share an existing cache (internal; derived tensors pass theirs).
        coord_set: id of ``coords`` in ``cache`` (internal).
        """
        spatial_shape = as_triple(spatial_shape, "SparseVoxels.spatial_shape")
        if check:
            validate_coords(coords, spatial_shape, batch_size, "SparseVoxels")
            if not isinstance(feats, Tensor) or feats.dim() != 2 or feats.shape[0] != coords.shape[0]:
                shape = list(feats.shape) if isinstance(feats, Tensor) else type(feats).__name__
                raise ValueError(f"SparseVoxels: feats must be [N, C] with N = {coords.shape[0]}, got {shape}")
            if not feats.is_floating_point():
                raise TypeError(f"SparseVoxels: feats must be floating point, got {feats.dtype}")
        self.coords = coords.contiguous()
        self.feats = feats
        self.spatial_shape = spatial_shape
        self.batch_size = int(batch_size)
        self.cache = cache if cache is not None else VoxelCache()
        self.coord_set = coord_set if coord_set is not None else self.cache.new_coord_set()

    @property
    def num_voxels(self) -> int:
        """Number of active sites N."""
        return self.coords.shape[0]

    def replace_feats(self, feats: Tensor) -> "SparseVoxels":
        """Same sites, cache and coordinate set; new features float [N, C']."""
        if feats.dim() != 2 or feats.shape[0] != self.num_voxels:
            raise ValueError(f"replace_feats: feats must be [{self.num_voxels}, C], got {list(feats.shape)}")
        return SparseVoxels(
            self.coords, feats, self.spatial_shape, self.batch_size,
            check=False, cache=self.cache, coord_set=self.coord_set,
        )

    def with_sites(self, coords: Tensor, feats: Tensor, spatial_shape: Triple, coord_set: int | None = None) -> "SparseVoxels":
        """New sites sharing this tensor's cache (conv outputs); coords int32 [M, 4], feats [M, C]."""
        return SparseVoxels(
            coords, feats, spatial_shape, self.batch_size, check=False, cache=self.cache, coord_set=coord_set
        )

    def submanifold_map(self, kernel: Triple, dilation: Triple) -> KernelMap:
        """Kernel map of a submanifold conv on these sites (cached)."""
        if any(k % 2 == 0 for k in kernel):
            raise ValueError(f"submanifold conv needs an odd kernel size, got {kernel}")
        padding = tuple(k // 2 * d for k, d in zip(kernel, dilation))
        key = ConvKey(self.coord_set, kernel, (1, 1, 1), padding, dilation, True)
        if key not in self.cache.kernel_maps:
            nbr = kernel_map(self.coords, self.coords, self.spatial_shape, self.spatial_shape,
                             kernel, (1, 1, 1), padding, dilation)
            self.cache.kernel_maps[key] = KernelMap(
                nbr, self.coords, self.spatial_shape, self.num_voxels, True, self.coord_set
            )
        return self.cache.kernel_maps[key]

    def conv_map(
        self, kernel: Triple, stride: Triple, padding: Triple, dilation: Triple, transposed: bool = False,
        output_padding: Triple = (0, 0, 0),
    ) -> KernelMap:
        """Kernel map of a regular (dilating) or transposed conv from these sites (cached)."""
        key = ConvKey(self.coord_set, kernel, stride, padding, dilation, False, transposed, output_padding)
        if key not in self.cache.kernel_maps:
            if transposed:
                out_shape = transposed_conv_output_shape(self.spatial_shape, kernel, stride, padding, dilation, output_padding)
            else:
                out_shape = conv_output_shape(self.spatial_shape, kernel, stride, padding, dilation)
            out_coords, nbr = conv_map(
                self.coords, self.spatial_shape, out_shape, kernel, stride, padding, dilation, transposed
            )
            self.cache.kernel_maps[key] = KernelMap(
                nbr, out_coords, out_shape, self.num_voxels, False, self.cache.new_coord_set()
            )
        return self.cache.kernel_maps[key]

    def dense(self, channels_first: bool = True) -> Tensor:
        """Scatters to a dense grid: [B, C, S0, S1, S2] (or [B, S0, S1, S2, C]); empty cells are 0."""
        out = self.feats.new_zeros(self.batch_size, *self.spatial_shape, self.feats.shape[1])
        c = self.coords.long()
        out = out.index_put((c[:, 0], c[:, 1], c[:, 2], c[:, 3]), self.feats)
        return out.permute(0, 4, 1, 2, 3).contiguous() if channels_first else out

    @classmethod
    def from_dense(cls, grid: Tensor) -> "SparseVoxels":
        """Active sites of a dense grid float [B, C, S0, S1, S2]: cells with any non-zero channel."""
        if grid.dim() != 5:
            raise ValueError(f"from_dense: grid must be [B, C, S0, S1, S2], got {list(grid.shape)}")
        cells = grid.permute(0, 2, 3, 4, 1)
        coords = (cells != 0).any(-1).nonzero().int()
        c = coords.long()
        feats = cells[c[:, 0], c[:, 1], c[:, 2], c[:, 3]]
        return cls(coords, feats, grid.shape[2:], grid.shape[0], check=False)

    def __repr__(self) -> str:
        return (f"SparseVoxels(num_voxels={self.num_voxels}, channels={self.feats.shape[1]}, "
                f"spatial_shape={self.spatial_shape}, batch_size={self.batch_size})")
