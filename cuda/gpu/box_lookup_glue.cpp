// CUDA glue of box_lookup: the shared checks and allocation (../glue/box_lookup_args.h),
// then the launchers of box_lookup.cu on the current stream. The order of occupied is not
// checked here (that would wait for the device): it must be sorted unique keys.
#include <ATen/cuda/CUDAContext.h>
#include <torch/library.h>

#include "../glue/box_lookup_args.h"

namespace sparse3d {
namespace {

std::tuple<at::Tensor, at::Tensor> box_lookup_cuda(const at::Tensor& points,
                                                   const at::Tensor& occupied,
                                                   at::ArrayRef<double> lower,
                                                   double voxel_size, c10::IntArrayRef shape,
                                                   double half_size, int64_t k) {
  BoxLookupCall call = prepare_box_lookup(points, occupied, lower, voxel_size, shape, half_size, k);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t capacity = call.keys.size(0);
  launch_box_hash_build_kernel(call.occupied.data_ptr<int64_t>(), call.N,
                               call.keys.data_ptr<int64_t>(), call.values.data_ptr<int32_t>(),
                               capacity, stream);
  launch_box_lookup_kernel(call.points.data_ptr<float>(), call.S, call.g,
                           call.keys.data_ptr<int64_t>(), call.values.data_ptr<int32_t>(),
                           capacity, call.K, call.index.data_ptr<int64_t>(),
                           call.weights.data_ptr<float>(), stream);
  return {call.index, call.weights};
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CUDA, m) { m.impl("box_lookup", &box_lookup_cuda); }

}  // namespace sparse3d
