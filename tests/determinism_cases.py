"""Workloads that promise bit-identical results at any thread count, run at 1, 2 and 3
threads in one process; tests/test_determinism_matrix.py runs this file in subprocesses
with the CPU's instruction set capped (AVX2, AVX-512, uncapped), so that the promise is
checked on every vector path of torch, MKL, oneDNN and sparse3d._C, not only the
machine's best one. Add each new method's training step here.

    python tests/determinism_cases.py [CASE ...]   # prints {"case": "identical" | "differs: ..."} as JSON
"""

import json
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from radiance_runs import field_run_config
from sparse_cases import random_coords

from sparse3d.core.elementwise import sigmoid, softplus
from sparse3d.core.partition import set_partition
from sparse3d.core.sparse_voxels import SparseVoxels
from sparse3d.engine.distributed import World
from sparse3d.engine.trainer import Trainer
from sparse3d.nn.backbones.voxel_resnet import VoxelResBackBone8x
from sparse3d.nn.dsvt import DSVT, DynamicVFE
from sparse3d.nn.linear import Linear
from sparse3d.render.rasterize import RasterConfig, rasterize_gaussians
from sparse3d.synthetic.objects.generator import (
    SyntheticObjectsConfig,
    write_synthetic_objects,
)

sys.path.insert(0, str(Path(__file__).parent / "nn"))  # the DSVT test helpers
from dsvt_cases import random_voxels, tiny_voxel_config  # noqa: E402

THREADS = (1, 2, 3)


def _grads_of_random_loss(outputs: list[torch.Tensor], inputs: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outputs)
    return [x for x in torch.autograd.grad(loss, inputs, allow_unused=True) if x is not None]


def linear_layer() -> list[torch.Tensor]:
    """The deterministic Linear on many rows (the weight gradient reduces over all of them)
    and on fewer rows than one chunk of its GEMMs."""
    torch.manual_seed(0)
    layer = Linear(64, 48)
    results = []
    for rows in (20000, 300):
        x = torch.randn(rows, 64, requires_grad=True)
        out = layer(x)
        results += [out, *_grads_of_random_loss([out], [x, *layer.parameters()], 1)]
    return results


def sparse_conv_encoder() -> list[torch.Tensor]:
    """CenterPoint's VoxelResBackBone8x (sparse conv, batch norm) forward and backward."""
    torch.manual_seed(1)
    grid = (64, 48, 40)
    coords = random_coords(2, grid, 1, 0.01)
    feats = torch.randn(coords.shape[0], 5, requires_grad=True)
    encoder = VoxelResBackBone8x(5, grid).train()
    out = encoder(SparseVoxels(coords, feats, grid, 1)).encoded.feats
    return [out, *_grads_of_random_loss([out], [feats, *encoder.parameters()], 3)]


def rasterizer() -> list[torch.Tensor]:
    """The native Gaussian rasterizer, forward and backward, two cameras."""
    g = torch.Generator().manual_seed(4)
    n = 3000
    params = [
        ((torch.rand(n, 3, generator=g) * 2 - 1) * torch.tensor([2.0, 1.5, 2.0])).requires_grad_(),
        torch.randn(n, 4, generator=g).requires_grad_(),
        torch.exp(torch.rand(n, 3, generator=g) * 2 - 3.5).requires_grad_(),
        (torch.rand(n, generator=g) * 0.9 + 0.05).requires_grad_(),
        torch.rand(n, 3, generator=g).requires_grad_(),
    ]
    viewmats = torch.eye(4).repeat(2, 1, 1)
    viewmats[:, 2, 3] = 4.0
    c, s = math.cos(0.3), math.sin(0.3)
    viewmats[1, :3, :3] = torch.tensor([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])
    Ks = torch.tensor([[70.0, 0.0, 48.0], [0.0, 70.0, 32.0], [0.0, 0.0, 1.0]]).repeat(2, 1, 1)
    image, alphas, _ = rasterize_gaussians(*params, viewmats, Ks, 96, 64, RasterConfig(backend="native"))
    return [image, alphas, *_grads_of_random_loss([image, alphas], params, 5)]


def set_partition_case() -> list[torch.Tensor]:
    """DSVT's window / set partition with a shift."""
    coords = random_coords(7, (120, 120, 4), 2, 0.3)
    part = set_partition(coords, (120, 120, 4), (12, 12, 4), (6, 6, 0), 36)
    return [part.set_inds, part.first_slot, part.key_mask, part.coords_in_window]


def dsvt_backbone() -> list[torch.Tensor]:
    """A DSVT-V-like backbone (set attention, pooling) behind a dynamic VFE, forward and backward."""
    torch.manual_seed(5)
    config = tiny_voxel_config()
    model = DSVT(config).train()
    voxels = random_voxels(6, 900, config.grid_shape, config.channels)
    feats = voxels.feats.clone().requires_grad_()
    out = model(voxels.replace_feats(feats)).feats
    vfe = DynamicVFE(4, (32, 16), [-8, -8, -3, 8, 8, 3], [0.5, 0.5, 6]).train()
    points = torch.rand(30000, 4, generator=torch.Generator().manual_seed(8)) * 16 - 8
    pillars = vfe(points, batch_size=1).feats
    params = [feats, *model.parameters(), *vfe.parameters()]
    return [out, pillars, *_grads_of_random_loss([out, pillars], params, 7)]


def activations() -> list[torch.Tensor]:
    """sparse3d.core.elementwise's softplus and sigmoid, forward and backward, on sizes
    above torch's grain (torch's own change bits with the thread count on most of them)."""
    results = []
    for n in range(400_001, 400_001 + 10 * 7, 7):
        x = (torch.randn(n, generator=torch.Generator().manual_seed(n)) * 4).requires_grad_()
        outputs = [softplus(x), sigmoid(x)]
        results += [*outputs, *_grads_of_random_loss(outputs, [x], n)]
    return results


def radiance_fields() -> list[torch.Tensor]:
    """strivec (its coarse grid's run included) and tensorf trained a few steps on a tiny
    many-view object, through an upsampling and an alpha mask: their parameters."""
    data = SyntheticObjectsConfig(objects=("capsule",), resolution=24, num_test_views=1, num_dense_views=4)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_synthetic_objects(Path(tmp), data)[0]
        for method in ("strivec", "tensorf"):
            config = field_run_config(method, folder, Path(tmp) / method, steps=9)
            config.render.batch_rays = 4096  # ops over more values than torch's grain, as in real runs
            trainer = Trainer(config, method, config.output, World())
            trainer.train()
            results += [p.detach().clone() for p in trainer.method.parameters()]
    return results


CASES: dict[str, Callable[[], list[torch.Tensor]]] = {
    "linear": linear_layer,
    "sparse_conv": sparse_conv_encoder,
    "rasterizer": rasterizer,
    "set_partition": set_partition_case,
    "dsvt": dsvt_backbone,
    "activations": activations,
    "radiance_fields": radiance_fields,
}


def compare_across_threads(case: Callable[[], list[torch.Tensor]]) -> str:
    """"identical", or which result differs at which thread count and by how much."""
    runs = []
    for threads in THREADS:
        torch.set_num_threads(threads)
        runs.append(case())
    for threads, run in zip(THREADS[1:], runs[1:]):
        for i, (a, b) in enumerate(zip(runs[0], run)):
            if not torch.equal(a, b):
                diff = (a.double() - b.double()).abs().max().item() if a.shape == b.shape else "shape"
                return f"differs: result {i} at {threads} threads vs 1 (max |diff| {diff})"
    return "identical"


if __name__ == "__main__":
    names = sys.argv[1:] or list(CASES)
    print(json.dumps({name: compare_across_threads(CASES[name]) for name in names}))
