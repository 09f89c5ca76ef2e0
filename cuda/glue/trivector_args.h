// Checked arguments and allocated outputs of trivector_features and its backward, shared
// by the CPU kernels and the CUDA glue so that both validate and allocate identically.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/max.h>
#include <c10/util/Exception.h>

#include <tuple>

#include "sparse3d/trivector.h"

namespace sparse3d {

struct TrivectorCall {
  // contiguous inputs; all floats share the vectors' dtype
  at::Tensor points;   // [S, 3]
  at::Tensor index;    // int64 [S, K]
  at::Tensor weights;  // [S, K]
  at::Tensor vectors;  // [N, 3, R, D]
  at::Tensor centers;  // [N, 3]
  int64_t S, K, N, R, D;
  double half_size;

  template <typename scalar_t>
  TrivectorGeom<scalar_t> geom() const {
    return {(scalar_t)half_size, (scalar_t)(2 * half_size), (scalar_t)(D - 1), D};
  }
};

inline TrivectorCall prepare_trivector(const at::Tensor& points, const at::Tensor& index,
                                       const at::Tensor& weights, const at::Tensor& vectors,
                                       const at::Tensor& centers, double half_size,
                                       const char* op) {
  TORCH_CHECK(vectors.dim() == 4 && vectors.size(1) == 3 && vectors.size(3) >= 2, "sparse3d.",
              op, ": vectors must be [N, 3, R, D >= 2], got ", vectors.sizes());
  const at::ScalarType dtype = vectors.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "sparse3d.", op,
              ": vectors must be float32 or float64, got ", dtype);
  TORCH_CHECK(points.dim() == 2, "sparse3d.", op, ": points must be [S, 3], got ", points.sizes());
  const int64_t S = points.size(0), N = vectors.size(0);
  TORCH_CHECK(index.dim() == 2 && index.size(0) == S && index.scalar_type() == at::kLong,
              "sparse3d.", op, ": index must be int64 [S, K] with S = ", S, ", got ",
              index.scalar_type(), " ", index.sizes());
  const int64_t K = index.size(1);
  const struct {
    const at::Tensor& t;
    const char* name;
    int64_t rows, cols;
  } floats[] = {{points, "points", S, 3}, {weights, "weights", S, K}, {centers, "centers", N, 3}};
  for (const auto& f : floats) {
    TORCH_CHECK(f.t.dim() == 2 && f.t.size(0) == f.rows && f.t.size(1) == f.cols, "sparse3d.",
                op, ": ", f.name, " must be [", f.rows, ", ", f.cols, "], got ", f.t.sizes());
    TORCH_CHECK(f.t.scalar_type() == dtype, "sparse3d.", op, ": ", f.name,
                " must have the vectors' dtype ", dtype, ", got ", f.t.scalar_type());
    TORCH_CHECK(f.t.device() == vectors.device(), "sparse3d.", op, ": ", f.name,
                " must be on the vectors' device");
  }
  TORCH_CHECK(index.device() == vectors.device(), "sparse3d.", op,
              ": index must be on the vectors' device");
  TORCH_CHECK(half_size > 0, "sparse3d.", op, ": half_size must be > 0, got ", half_size);
  at::Tensor idx = index.contiguous();
  // On the GPU an out-of-range tensor is skipped instead: a check would wait for the device.
  if (idx.is_cpu() && idx.numel() > 0) {
    const int64_t top = idx.max().item<int64_t>();
    TORCH_CHECK(top < N, "sparse3d.", op, ": index must be < N = ", N, ", got ", top);
  }
  return {points.contiguous(), idx, weights.contiguous(), vectors.contiguous(),
          centers.contiguous(), S, K, N, vectors.size(2), vectors.size(3), half_size};
}

// The forward's output: [S, R] of the vectors' dtype.
inline at::Tensor trivector_output(const TrivectorCall& call) {
  return at::empty({call.S, call.R}, call.vectors.options());
}

// The backward's incoming gradient [S, R], contiguous, and the vectors' gradient
// [N, 3, R, D] (every entry is written by the tensor's owner, so no zero-fill is needed).
inline std::tuple<at::Tensor, at::Tensor> prepare_trivector_bwd(const at::Tensor& v_out,
                                                                const TrivectorCall& call) {
  TORCH_CHECK(v_out.dim() == 2 && v_out.size(0) == call.S && v_out.size(1) == call.R &&
                  v_out.scalar_type() == call.vectors.scalar_type() &&
                  v_out.device() == call.vectors.device(),
              "sparse3d.trivector_features_bwd: v_out must be ", call.vectors.scalar_type(), " [",
              call.S, ", ", call.R, "] on the vectors' device, got ", v_out.scalar_type(), " ",
              v_out.sizes());
  return {v_out.contiguous(), at::empty(call.vectors.sizes(), call.vectors.options())};
}

}  // namespace sparse3d
