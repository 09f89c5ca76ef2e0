"""Interop with spconv (optional): SparseConvTensor converters, the CPU-backward shim, and
loading state dicts written with any spconv version's weight layout.

spconv's CPU build calls ``torch.cuda.current_stream()`` unconditionally in its backward
(and in its hash table), which raises under a CPU-only torch before the CPU branch is
reached. :func:`patch_spconv_cpu_stream` replaces spconv's ``get_current_stream`` with one
that returns stream 0 when CUDA is unavailable, which is what the CPU branch expects. It
is used by the parity tests and by ``tools/bench_sparse_conv.py``; it changes nothing
when CUDA is available.
"""

import importlib

import torch
from torch import Tensor, nn

from sparse3d.core.sparse_voxels import SparseVoxels
from sparse3d.nn.conv import _SparseConv

_STREAM_MODULES = ("spconv.pytorch.cppcore", "spconv.pytorch.ops", "spconv.pytorch.hash")


def patch_spconv_cpu_stream() -> None:
    """Makes spconv's backward runnable under a CPU-only torch (idempotent; no-op with CUDA)."""
    if torch.cuda.is_available():
        return
    for name in _STREAM_MODULES:
        module = importlib.import_module(name)
        module.get_current_stream = _cpu_stream


def _cpu_stream() -> int:
    return 0


SPCONV_LAYOUTS = {
    # name: permutation taking a stored weight to KRSC [C_out, k..., C_in] (3D kernels)
    "KRSC": (0, 1, 2, 3, 4),  # spconv >= 2.2 (and 2.x implicit GEMM): sparse3d's own layout
    "RSKC": (3, 0, 1, 2, 4),  # spconv 2.0 / 2.1 native: [k..., C_out, C_in]
    "RSCK": (4, 0, 1, 2, 3),  # spconv 1.x: [k..., C_in, C_out]
}


def sparse_weight_layout(module: nn.Module, state_dict: dict[str, Tensor], prefix: str = "") -> str:
    """The spconv weight layout (a key of :data:`SPCONV_LAYOUTS`) of the sparse-conv weights
    of ``module`` in ``state_dict`` (keys = ``prefix`` + the module's names).

    The three layouts differ only in where C_in and C_out sit, so a weight with C_in ==
    C_out and a cubic kernel fits several; the layout is decided once for the whole state
    dict from the weights that fit exactly one.

    Raises:
        ValueError: when the weights fit no single layout (naming a weight), or when every
            weight is ambiguous (KRSC, the current layout, is not assumed silently).
    """
    candidates = set(SPCONV_LAYOUTS)
    for name, expected in _sparse_weight_shapes(module).items():
        stored = state_dict.get(prefix + name)
        if stored is None:
            continue
        fits = {layout for layout, order in SPCONV_LAYOUTS.items() if _permuted_shape(stored.shape, order) == expected}
        if not fits:
            raise ValueError(f"{prefix}{name}: shape {list(stored.shape)} is no spconv layout of {list(expected)} (KRSC)")
        candidates &= fits
    if not candidates:
        raise ValueError("the sparse-conv weights mix spconv layouts (KRSC, RSKC, RSCK)")
    if len(candidates) > 1:
        if candidates == set(SPCONV_LAYOUTS):
            return "KRSC"  # nothing to convert: no weight tells the layouts apart, and none needs it
        raise ValueError(f"the sparse-conv weights fit the spconv layouts {sorted(candidates)} alike")
    return candidates.pop()


def load_spconv_state_dict(module: nn.Module, state_dict: dict[str, Tensor], prefix: str = "") -> None:
    """Loads ``state_dict`` (keys ``prefix`` + the module's names; other keys ignored) into
    ``module``, converting its sparse-conv weights from whichever spconv layout they were
    saved in (:func:`sparse_weight_layout`) to KRSC.

    Raises:
        KeyError: naming the missing and unexpected keys under ``prefix``.
        ValueError: for weights in no spconv layout.
    """
    own = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    order = SPCONV_LAYOUTS[sparse_weight_layout(module, own)]
    for name in _sparse_weight_shapes(module):
        if name in own and own[name].dim() == 5:
            own[name] = own[name].permute(order).contiguous()
    missing, unexpected = module.load_state_dict(own, strict=False)
    if missing or unexpected:
        raise KeyError(f"state dict mismatch under {prefix!r}: missing {missing}, unexpected {unexpected}")


def _sparse_weight_shapes(module: nn.Module) -> dict[str, torch.Size]:
    """State-dict name -> KRSC shape of every 3D sparse-conv weight of ``module``."""
    return {
        f"{name}.weight" if name else "weight": m.weight.shape
        for name, m in module.named_modules()
        if isinstance(m, _SparseConv) and m.weight.dim() == 5
    }


def _permuted_shape(shape: torch.Size, order: tuple[int, ...]) -> torch.Size | None:
    return torch.Size(shape[i] for i in order) if len(shape) == len(order) else None


def to_spconv(x: SparseVoxels, planar: bool = False):
    """``spconv.pytorch.SparseConvTensor`` with the same features, indices and shape.

    The indices are shared (int32 [N, 4]); spconv reads them in the axis order of
    ``x.spatial_shape``, as sparse3d does. With ``planar``, voxels on a plane (spatial shape
    (1, H, W)) become a 2D tensor (indices (batch, y, x), spatial shape [H, W]) for
    spconv's 2D layers.
    """
    import spconv.pytorch as spconv

    if not planar:
        return spconv.SparseConvTensor(x.feats, x.coords, list(x.spatial_shape), x.batch_size)
    if x.spatial_shape[0] != 1:
        raise ValueError(
            f"to_spconv(planar=True): voxels must lie on a plane, spatial_shape (1, H, W), got {tuple(x.spatial_shape)}"
        )
    return spconv.SparseConvTensor(x.feats, x.coords[:, [0, 2, 3]].contiguous(), list(x.spatial_shape[1:]), x.batch_size)


def from_spconv(tensor, check: bool = True) -> SparseVoxels:
    """SparseVoxels from a ``SparseConvTensor`` (features, indices, spatial shape, batch
    size); a 2D tensor (indices (batch, y, x)) becomes voxels on the plane (1, H, W), the
    input of sparse3d's 2D layers."""
    indices, shape = tensor.indices.int(), tuple(tensor.spatial_shape)
    if len(shape) == 2:
        indices = torch.cat([indices[:, :1], torch.zeros_like(indices[:, :1]), indices[:, 1:]], 1)
        shape = (1, *shape)
    return SparseVoxels(indices.contiguous(), tensor.features, shape, tensor.batch_size, check=check)


def spconv_voxel_res_backbone(in_channels: int = 5, channels: tuple[int, int, int, int] = (16, 32, 64, 128)):
    """OpenPCDet's VoxelResBackBone8x built from spconv layers, with the same parameter
    names as :class:`sparse3d.nn.backbones.voxel_resnet.VoxelResBackBone8x` (the reference
    of the parity tests and the benchmarks), with the stage widths ``channels``. ``forward``
    takes a (b, z, y, x) ``SparseConvTensor`` and returns the ``conv_out`` tensor."""
    import spconv.pytorch as spconv
    from torch import nn

    def norm(c):
        return nn.BatchNorm1d(c, eps=1e-3, momentum=0.01)

    class Block(spconv.SparseModule):
        def __init__(self, c, key):
            super().__init__()
            self.conv1 = spconv.SubMConv3d(c, c, 3, padding=1, bias=True, indice_key=key)
            self.bn1, self.relu = norm(c), nn.ReLU()
            self.conv2 = spconv.SubMConv3d(c, c, 3, padding=1, bias=True, indice_key=key)
            self.bn2 = norm(c)

        def forward(self, x):
            out = self.conv1(x)
            out = out.replace_feature(self.relu(self.bn1(out.features)))
            out = self.conv2(out)
            return out.replace_feature(self.relu(self.bn2(out.features) + x.features))

    def down(cin, cout, pad, key):
        conv = spconv.SparseConv3d(cin, cout, 3, 2, pad, bias=False, indice_key=key)
        return spconv.SparseSequential(conv, norm(cout), nn.ReLU())

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            c1, c2, c3, c4 = channels
            self.conv_input = spconv.SparseSequential(
                spconv.SubMConv3d(in_channels, c1, 3, padding=1, bias=False, indice_key="subm1"), norm(c1), nn.ReLU()
            )
            self.conv1 = spconv.SparseSequential(Block(c1, "res1"), Block(c1, "res1"))
            self.conv2 = spconv.SparseSequential(down(c1, c2, 1, "spconv2"), Block(c2, "res2"), Block(c2, "res2"))
            self.conv3 = spconv.SparseSequential(down(c2, c3, 1, "spconv3"), Block(c3, "res3"), Block(c3, "res3"))
            self.conv4 = spconv.SparseSequential(down(c3, c4, (0, 1, 1), "spconv4"), Block(c4, "res4"), Block(c4, "res4"))
            self.conv_out = spconv.SparseSequential(
                spconv.SparseConv3d(c4, c4, (3, 1, 1), (2, 1, 1), 0, bias=False, indice_key="spconv_down2"), norm(c4), nn.ReLU()
            )

        def forward(self, x):
            return self.conv_out(self.conv4(self.conv3(self.conv2(self.conv1(self.conv_input(x))))))

    return Encoder()
