// CUDA kernels of the volume-rendering weights: one thread per ray, its samples in order
// (as on the CPU), so every output has one writer.

#include "cuda_utils.cuh"
#include "sparse3d/volume.h"

namespace sparse3d {
namespace {

template <typename scalar_t>
__global__ void volume_weights_kernel(const scalar_t* sigmas, const scalar_t* deltas,
                                      const int64_t* offsets, int64_t R, scalar_t min_t,
                                      scalar_t* weights, scalar_t* transmittance) {
  const int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (r >= R) return;
  volume_weights_ray(sigmas, deltas, offsets[r], offsets[r + 1], min_t, weights,
                     transmittance + r);
}

template <typename scalar_t>
__global__ void volume_weights_bwd_kernel(const scalar_t* v_weights,
                                          const scalar_t* v_transmittance,
                                          const scalar_t* sigmas, const scalar_t* deltas,
                                          const scalar_t* weights,
                                          const scalar_t* transmittance,
                                          const int64_t* offsets, int64_t R, scalar_t min_t,
                                          scalar_t* v_sigmas) {
  const int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (r >= R) return;
  volume_weights_ray_bwd(v_weights, v_transmittance[r], sigmas, deltas, weights,
                         transmittance[r], offsets[r], offsets[r + 1], min_t, v_sigmas);
}

}  // namespace

template <typename scalar_t>
void launch_volume_weights_kernel(const scalar_t* sigmas, const scalar_t* deltas,
                                  const int64_t* offsets, int64_t R, scalar_t min_t,
                                  scalar_t* weights, scalar_t* transmittance,
                                  cudaStream_t stream) {
  if (R == 0) return;
  volume_weights_kernel<<<blocks_for(R), kThreads, 0, stream>>>(sigmas, deltas, offsets, R,
                                                                min_t, weights, transmittance);
  check_launch("volume_weights_kernel");
}

template <typename scalar_t>
void launch_volume_weights_bwd_kernel(const scalar_t* v_weights, const scalar_t* v_transmittance,
                                      const scalar_t* sigmas, const scalar_t* deltas,
                                      const scalar_t* weights, const scalar_t* transmittance,
                                      const int64_t* offsets, int64_t R, scalar_t min_t,
                                      scalar_t* v_sigmas, cudaStream_t stream) {
  if (R == 0) return;
  volume_weights_bwd_kernel<<<blocks_for(R), kThreads, 0, stream>>>(
      v_weights, v_transmittance, sigmas, deltas, weights, transmittance, offsets, R, min_t,
      v_sigmas);
  check_launch("volume_weights_bwd_kernel");
}

template void launch_volume_weights_kernel<float>(const float*, const float*, const int64_t*,
                                                  int64_t, float, float*, float*, cudaStream_t);
template void launch_volume_weights_kernel<double>(const double*, const double*,
                                                   const int64_t*, int64_t, double, double*,
                                                   double*, cudaStream_t);
template void launch_volume_weights_bwd_kernel<float>(const float*, const float*, const float*,
                                                      const float*, const float*, const float*,
                                                      const int64_t*, int64_t, float, float*,
                                                      cudaStream_t);
template void launch_volume_weights_bwd_kernel<double>(const double*, const double*,
                                                       const double*, const double*,
                                                       const double*, const double*,
                                                       const int64_t*, int64_t, double, double*,
                                                       cudaStream_t);

}  // namespace sparse3d
