// CUDA glue of trivector_features: the shared checks and allocation
// (../glue/trivector_args.h), then the launchers of trivector.cu on the current stream. The
// backward's pairs are sorted by tensor here with ATen's stable sort, so each tensor's
// samples stay ascending, as on the CPU.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/sort.h>
#include <torch/library.h>

#include "../glue/trivector_args.h"

namespace sparse3d {
namespace {

at::Tensor trivector_features_cuda(const at::Tensor& points, const at::Tensor& index,
                                   const at::Tensor& weights, const at::Tensor& vectors,
                                   const at::Tensor& centers, double half_size) {
  const TrivectorCall call =
      prepare_trivector(points, index, weights, vectors, centers, half_size, "trivector_features");
  at::Tensor out = trivector_output(call);
  AT_DISPATCH_FLOATING_TYPES(call.vectors.scalar_type(), "trivector_features_cuda", [&] {
    launch_trivector_features_kernel<scalar_t>(
        call.points.data_ptr<scalar_t>(), call.index.data_ptr<int64_t>(),
        call.weights.data_ptr<scalar_t>(), call.vectors.data_ptr<scalar_t>(),
        call.centers.data_ptr<scalar_t>(), call.S, call.K, call.N, call.R,
        call.geom<scalar_t>(), out.data_ptr<scalar_t>(), at::cuda::getCurrentCUDAStream());
  });
  return out;
}

at::Tensor trivector_features_bwd_cuda(const at::Tensor& v_out, const at::Tensor& points,
                                       const at::Tensor& index, const at::Tensor& weights,
                                       const at::Tensor& vectors, const at::Tensor& centers,
                                       double half_size) {
  const TrivectorCall call = prepare_trivector(points, index, weights, vectors, centers,
                                               half_size, "trivector_features_bwd");
  auto [g_out, v_vectors] = prepare_trivector_bwd(v_out, call);
  // order: the flat (sample, slot) positions sorted by tensor; tensor n owns
  // order[offsets[n]:offsets[n + 1]] (-1 slots sort first, out-of-range ones last).
  auto [sorted, order] = at::sort(call.index.reshape({-1}), /*stable=*/true, 0, false);
  const at::Tensor offsets = at::searchsorted(sorted, at::arange(call.N + 1, sorted.options()));
  AT_DISPATCH_FLOATING_TYPES(call.vectors.scalar_type(), "trivector_features_bwd_cuda", [&] {
    launch_trivector_features_bwd_kernel<scalar_t>(
        g_out.data_ptr<scalar_t>(), call.points.data_ptr<scalar_t>(),
        call.weights.data_ptr<scalar_t>(), call.vectors.data_ptr<scalar_t>(),
        call.centers.data_ptr<scalar_t>(), order.data_ptr<int64_t>(),
        offsets.data_ptr<int64_t>(), call.N, call.K, call.R, call.geom<scalar_t>(),
        v_vectors.data_ptr<scalar_t>(), at::cuda::getCurrentCUDAStream());
  });
  return v_vectors;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CUDA, m) {
  m.impl("trivector_features", &trivector_features_cuda);
  m.impl("trivector_features_bwd", &trivector_features_bwd_cuda);
}

}  // namespace sparse3d
