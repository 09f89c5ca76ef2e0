"""The CUDA half of the suite (`make test-cuda`) is complete and cannot pass by skipping:
every op with a CUDA kernel has `cuda`-marked tests, and SPARSE3D_REQUIRE_CUDA=1 refuses to
start where CUDA cannot run. Both checks run on any machine."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from devices import cuda_ops, cuda_unavailable

ROOT = Path(__file__).resolve().parents[1]

# op (as registered in cuda/gpu/*_glue.cpp) -> the cuda tests that compare its CUDA kernel
# with the CPU kernel or the torch reference (a parametrized test counts through its
# "cuda" case).
CUDA_TESTS = {
    "affine_act": ["tests/core/test_batch_norm_stats.py::test_affine_act_matches_reference_with_gradients",
                   "tests/core/test_batch_norm_stats.py::test_cuda_matches_cpu_and_repeats_bitwise"],
    "batch_norm_bwd_reduce": ["tests/core/test_batch_norm_stats.py::test_stats_match_reference_and_torch",
                              "tests/core/test_batch_norm_stats.py::test_cuda_matches_cpu_and_repeats_bitwise"],
    "batch_norm_stats": ["tests/core/test_batch_norm_stats.py::test_stats_match_reference_and_torch",
                         "tests/core/test_batch_norm_stats.py::test_cuda_matches_cpu_and_repeats_bitwise"],
    "bev_iou": ["tests/core/test_bev_nms.py::test_cuda_matches_cpu"],
    "box_lookup": ["tests/core/test_box_lookup.py::test_matches_reference",
                   "tests/core/test_box_lookup.py::test_cuda_matches_cpu_bit_for_bit"],
    "conv_map": ["tests/core/test_kernel_map.py::test_conv_map_and_kernel_map_match_reference",
                 "tests/core/test_kernel_map.py::test_transposed_conv_map_matches_reference",
                 "tests/core/test_sparse_cuda.py::test_kernel_maps_match_cpu"],
    "invert_kernel_map": ["tests/core/test_kernel_map.py::test_conv_map_and_kernel_map_match_reference",
                          "tests/core/test_sparse_cuda.py::test_kernel_maps_match_cpu"],
    "kernel_map": ["tests/core/test_kernel_map.py::test_conv_map_and_kernel_map_match_reference",
                   "tests/core/test_sparse_cuda.py::test_kernel_maps_match_cpu"],
    "march_rays": ["tests/core/test_ray_march.py::test_matches_reference_bit_for_bit",
                   "tests/core/test_ray_march.py::test_grid_aligned_rays_match_reference"],
    "rotated_nms": ["tests/core/test_bev_nms.py::test_cuda_matches_cpu"],
    "segment_reduce": ["tests/core/test_segment.py::test_matches_reference_forward_and_backward",
                       "tests/core/test_segment.py::test_cuda_matches_cpu_bit_for_bit"],
    "segment_reduce_bwd": ["tests/core/test_segment.py::test_matches_reference_forward_and_backward",
                           "tests/core/test_segment.py::test_cuda_matches_cpu_bit_for_bit"],
    "set_partition": ["tests/core/test_partition.py::test_partition_cuda_matches_cpu"],
    "sparse_conv": ["tests/core/test_sparse_cuda.py::test_sparse_conv_matches_cpu_and_is_deterministic",
                    "tests/core/test_sparse_cuda.py::test_strided_sparse_conv_with_bias_and_inverse_map_matches_reference_and_cpu",
                    "tests/nn/test_spconv_cuda.py::test_subm_conv_matches_spconv_gpu"],
    "sparse_conv_bwd_weight": ["tests/core/test_sparse_cuda.py::test_sparse_conv_matches_cpu_and_is_deterministic",
                               "tests/core/test_sparse_cuda.py::test_strided_sparse_conv_with_bias_and_inverse_map_matches_reference_and_cpu"],
    "trivector_features": ["tests/fields/test_trivector.py::test_matches_reference_forward_and_backward",
                           "tests/fields/test_trivector.py::test_cuda_matches_cpu_and_repeats_bitwise"],
    "trivector_features_bwd": ["tests/fields/test_trivector.py::test_matches_reference_forward_and_backward",
                               "tests/fields/test_trivector.py::test_cuda_matches_cpu_and_repeats_bitwise"],
    "unique_coords": ["tests/core/test_sparse_cuda.py::test_voxelize_and_unique_match_cpu"],
    "volume_weights": ["tests/render/test_volume.py::test_matches_reference_forward_and_backward",
                       "tests/render/test_volume.py::test_cuda_matches_cpu_and_repeats_bitwise"],
    "volume_weights_bwd": ["tests/render/test_volume.py::test_matches_reference_forward_and_backward",
                           "tests/render/test_volume.py::test_cuda_matches_cpu_and_repeats_bitwise"],
    "voxelize": ["tests/core/test_voxelize.py::test_voxelize_index_matches_reference",
                 "tests/core/test_sparse_cuda.py::test_voxelize_and_unique_match_cpu"],
}


def _pytest(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "SPARSE3D_REQUIRE_CUDA"} | env
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True)


def test_every_cuda_kernel_has_cuda_marked_tests():
    # A new CUDA kernel (an m.impl in cuda/gpu/) must name its tests here, and every test
    # named must be collected by `-m cuda`: no kernel is left out of `make test-cuda`.
    assert set(CUDA_TESTS) == set(cuda_ops())
    files = sorted({test.split("::")[0] for tests in CUDA_TESTS.values() for test in tests})
    run = _pytest("--collect-only", "-q", "-m", "cuda", *files)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    collected = {line.split("[")[0] for line in run.stdout.splitlines() if "::" in line}
    missing = {test for tests in CUDA_TESTS.values() for test in tests} - collected
    assert not missing, f"not collected with -m cuda: {sorted(missing)}"


def test_require_cuda_refuses_to_start_without_cuda():
    reason = cuda_unavailable()
    if reason is None:
        pytest.skip("CUDA is usable here, so SPARSE3D_REQUIRE_CUDA=1 lets the run start")
    run = _pytest("-q", "-m", "cuda", "tests/core/test_segment.py", SPARSE3D_REQUIRE_CUDA="1")
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout[-3000:]
    assert f"SPARSE3D_REQUIRE_CUDA=1, but the CUDA tests cannot run here: {reason}" in run.stderr
    assert "passed" not in run.stdout and "skipped" not in run.stdout
