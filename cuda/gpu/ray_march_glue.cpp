// CUDA glue of march_rays: the shared checks and allocation (../glue/ray_march_args.h), the
// occupied voxels' hash table, then ray_march.cu's count and fill kernels around a scan of
// the counts on the current stream.
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../glue/ray_march_args.h"

typedef struct CUstream_st* cudaStream_t;

namespace sparse3d {

// Launchers defined in ray_march.cu (plain structs, pointers and a stream, as in launch.h).
void launch_occupied_hash_kernel(const int64_t* occupied, int64_t M, int64_t* keys,
                                 int32_t* values, int64_t capacity, cudaStream_t stream);
// counts: int64 [R]; max_steps: the device float of MarchRaysCall::max_steps
void launch_march_rays_count_kernel(const MarchInputs& in, const MarchGrid& g,
                                    const OccupiedTable& occ, const float* max_steps, int64_t R,
                                    int64_t* counts, cudaStream_t stream);
void launch_march_rays_fill_kernel(const MarchInputs& in, const MarchGrid& g,
                                   const OccupiedTable& occ, const float* max_steps, int64_t R,
                                   const int64_t* offsets, float* t, cudaStream_t stream);

namespace {

std::tuple<at::Tensor, at::Tensor> march_rays_cuda(
    const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& t_start,
    const at::Tensor& t_end, const at::Tensor& jitter, const at::Tensor& occupied,
    at::ArrayRef<double> lower, double voxel_size, c10::IntArrayRef shape, double step) {
  const c10::cuda::CUDAGuard device_guard(origins.device());
  MarchRaysCall call = prepare_march_rays(origins, dirs, t_start, t_end, jitter, occupied,
                                          lower, voxel_size, shape, step);
  const at::TensorOptions float_options = origins.options().dtype(at::kFloat);
  if (call.R == 0 || call.M == 0) return {call.offsets, at::empty({0}, float_options)};

  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t capacity = hash_capacity(call.M);
  at::Tensor keys = at::full({capacity}, kNoKey, occupied.options());
  at::Tensor values = at::full({capacity}, -1, occupied.options().dtype(at::kInt));
  launch_occupied_hash_kernel(call.occupied.data_ptr<int64_t>(), call.M,
                              keys.data_ptr<int64_t>(), values.data_ptr<int32_t>(), capacity,
                              stream);
  const OccupiedTable table{keys.data_ptr<int64_t>(), values.data_ptr<int32_t>(), capacity};
  const float* max_steps = call.max_steps.data_ptr<float>();

  // Each ray's count lands at offsets[r + 1]; an inclusive scan of them gives the offsets.
  at::Tensor counts = call.offsets.narrow(0, 1, call.R);
  launch_march_rays_count_kernel(call.in, call.grid, table, max_steps, call.R,
                                 counts.data_ptr<int64_t>(), stream);
  counts.cumsum_(0);
  const int64_t total = call.offsets[call.R].item<int64_t>();
  TORCH_CHECK(total >= 0 && total < kUnboundedSteps, "sparse3d.march_rays: a ray's samples "
              "never end (a ray without direction and an infinite t_end?)");
  at::Tensor t = at::empty({total}, float_options);
  launch_march_rays_fill_kernel(call.in, call.grid, table, max_steps, call.R,
                                call.offsets.data_ptr<int64_t>(), t.data_ptr<float>(), stream);
  return {call.offsets, t};
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CUDA, m) { m.impl("march_rays", &march_rays_cuda); }

}  // namespace sparse3d
