"""bfloat16 inference of the sparse convolution: the op sums bf16 products in float32 (the
VDPBF16PS tiles on CPUs with AVX512-BF16, the float32 kernels on widened values
elsewhere), deterministically; the layers switch to it under CPU autocast only where the
CPU has the instructions, and a capped CPU falls back to float32."""

import json
import os
import subprocess
import sys

import pytest
import torch
from sparse_cases import conv_case, random_coords

import sparse3d
from sparse3d.core.conv import sparse_conv, sparse_conv_ref
from sparse3d.core.precision import bf16_dot_products
from sparse3d.core.sparse_voxels import SparseVoxels
from sparse3d.nn.backbones.voxel_resnet import VoxelResBackBone8x


def bf16_case(seed: int, cin: int, cout: int, n: int = 400, m: int = 350):
    feats, weight, nbr = conv_case(seed, n=n, m=m, k=27, cin=cin, cout=cout, dtype=torch.float32)
    bias = torch.randn(cout, generator=torch.Generator().manual_seed(seed + 1))
    return feats.detach().bfloat16(), weight.detach().bfloat16(), nbr, bias


# odd Cin (the last pair padded), a 16-column tail after 32-wide blocks, Cout not a
# multiple of 16 (the float32 kernels), the encoder's widths
@pytest.mark.parametrize("cin,cout", [(5, 16), (7, 48), (32, 24), (16, 32), (64, 128)])
def test_bf16_products_are_summed_in_float32(cin, cout):
    feats, weight, nbr, bias = bf16_case(0, cin, cout)
    out = sparse_conv(feats, weight, nbr, bias=bias)
    assert out.dtype == torch.float32
    exact = sparse_conv_ref(feats.double(), weight.double(), nbr, bias.double())
    # bf16 x bf16 products are exact in float32; only the float32 sums round
    torch.testing.assert_close(out.double(), exact, rtol=1e-5, atol=1e-5)


def test_bf16_is_within_its_rounding_of_float32():
    feats, weight, nbr = conv_case(1, n=400, m=350, k=27, cin=32, cout=64, dtype=torch.float32)
    full = sparse_conv_ref(feats.detach(), weight.detach(), nbr)
    low = sparse_conv(feats.detach().bfloat16(), weight.detach().bfloat16(), nbr)
    error = float((low - full).norm() / full.norm())
    assert 1e-4 < error < 1e-2  # bf16 keeps 8 significant bits: about 2^-9 per value


def test_bf16_is_bitwise_identical_across_thread_counts():
    feats, weight, nbr, bias = bf16_case(2, 16, 32, n=9000, m=8000)
    previous = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3, 1):
            torch.set_num_threads(threads)
            outs.append(sparse_conv(feats, weight, nbr, bias=bias))
    finally:
        torch.set_num_threads(previous)
    assert all(torch.equal(outs[0], o) for o in outs[1:])


def test_bf16_refuses_training_and_a_bf16_bias():
    feats, weight, nbr, bias = bf16_case(3, 4, 16, n=20, m=15)
    with pytest.raises(ValueError, match="bfloat16 is for inference"):
        sparse_conv(feats, weight.requires_grad_(), nbr)
    with pytest.raises(ValueError, match=r"bias must be torch.float32 \[16\]"):
        sparse_conv(feats, weight.detach(), nbr, bias=bias.bfloat16())


@pytest.mark.skipif(not sparse3d.HAS_NATIVE, reason="native kernel checks")
def test_bf16_opcheck():
    feats, weight, nbr, bias = bf16_case(4, 4, 16, n=20, m=15)
    torch.library.opcheck(torch.ops.sparse3d.sparse_conv.default, (feats, weight, nbr, None, bias))


ENCODER_UNDER_AUTOCAST = """
import json, torch
from sparse_cases import random_coords
from sparse3d.core.precision import bf16_dot_products
from sparse3d.core.sparse_voxels import SparseVoxels
from sparse3d.nn.backbones.voxel_resnet import VoxelResBackBone8x
torch.manual_seed(0)
grid = (64, 48, 40)
coords = random_coords(1, grid, 1, 0.02)
x = SparseVoxels(coords, torch.randn(coords.shape[0], 5), grid, 1)
encoder = VoxelResBackBone8x(5, grid).eval()
with torch.no_grad():
    full = encoder(x).encoded.feats
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = encoder(x).encoded.feats
print(json.dumps({"bf16": bf16_dot_products(), "identical": torch.equal(full, low),
                  "error": float((low - full).norm() / full.norm())}))
"""


def encoder_under_autocast(cap: str | None) -> dict:
    """The encoder's eval forward in float32 and under CPU autocast to bfloat16, in a
    process with ATEN_CPU_CAPABILITY = ``cap`` (None: the CPU's own)."""
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    if cap is not None:
        env["ATEN_CPU_CAPABILITY"] = cap
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run([sys.executable, "-c", ENCODER_UNDER_AUTOCAST], env=env, capture_output=True, text=True,
                         cwd=tests)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sparse3d.HAS_NATIVE, reason="the bf16 kernels are native")
def test_a_cpu_without_bf16_dot_products_stays_float32_under_autocast():
    capped = encoder_under_autocast("avx2")
    assert capped == {"bf16": False, "identical": True, "error": 0.0}


@pytest.mark.skipif(not bf16_dot_products(), reason="this CPU has no AVX512-BF16")
def test_the_encoder_runs_its_sparse_convs_in_bf16_under_autocast():
    result = encoder_under_autocast(None)
    assert result["bf16"] and not result["identical"]
    assert result["error"] < 1e-2


def test_autocast_leaves_training_in_float32():
    torch.manual_seed(0)
    grid = (32, 32, 24)
    coords = random_coords(1, grid, 1, 0.05)
    x = SparseVoxels(coords, torch.randn(coords.shape[0], 5), grid, 1)
    encoder = VoxelResBackBone8x(5, grid).train()
    full = encoder(x).encoded.feats
    with torch.autocast("cpu", dtype=torch.bfloat16):
        trained = encoder(x).encoded.feats
    assert trained.dtype == torch.float32 and torch.equal(full, trained)
