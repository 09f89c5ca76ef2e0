// CUDA kernels for segment reductions: one thread per (segment, channel) output.

#include "cuda_utils.cuh"
#include "launch.h"
#include "sparse3d/segment.h"

namespace sparse3d {
namespace {

template <typename scalar_t>
__global__ void segment_reduce_kernel(const scalar_t* values, const int64_t* offsets,
                                      int64_t S, int64_t C, Reduce reduce, scalar_t* out,
                                      int64_t* arg) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= S * C) return;
  const int64_t s = idx / C, c = idx % C;
  int64_t unused;
  segment_reduce_channel(values, offsets[s], offsets[s + 1], C, c, reduce, out + idx,
                         arg ? arg + idx : &unused);
}

template <typename scalar_t>
__global__ void segment_reduce_bwd_kernel(const scalar_t* v_out, const int64_t* offsets,
                                          const int64_t* arg, int64_t S, int64_t C,
                                          Reduce reduce, scalar_t* v_values) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= S * C) return;
  const int64_t s = idx / C, c = idx % C;
  segment_reduce_channel_bwd(v_out[idx], arg ? arg[idx] : -1, offsets[s], offsets[s + 1], C,
                             c, reduce, v_values);
}

}  // namespace

template <typename scalar_t>
void launch_segment_reduce_kernel(const scalar_t* values, const int64_t* offsets, int64_t S,
                                  int64_t C, Reduce reduce, scalar_t* out, int64_t* arg,
                                  cudaStream_t stream) {
  if (S * C == 0) return;
  segment_reduce_kernel<<<blocks_for(S * C), kThreads, 0, stream>>>(values, offsets, S, C,
                                                                      reduce, out, arg);
  check_launch("segment_reduce_kernel");
}

template <typename scalar_t>
void launch_segment_reduce_bwd_kernel(const scalar_t* v_out, const int64_t* offsets,
                                      const int64_t* arg, int64_t S, int64_t C, Reduce reduce,
                                      scalar_t* v_values, cudaStream_t stream) {
  if (S * C == 0) return;
  segment_reduce_bwd_kernel<<<blocks_for(S * C), kThreads, 0, stream>>>(
      v_out, offsets, arg, S, C, reduce, v_values);
  check_launch("segment_reduce_bwd_kernel");
}

template void launch_segment_reduce_kernel<float>(const float*, const int64_t*, int64_t,
                                                  int64_t, Reduce, float*, int64_t*,
                                                  cudaStream_t);
template void launch_segment_reduce_kernel<double>(const double*, const int64_t*, int64_t,
                                                   int64_t, Reduce, double*, int64_t*,
                                                   cudaStream_t);
template void launch_segment_reduce_bwd_kernel<float>(const float*, const int64_t*,
                                                      const int64_t*, int64_t, int64_t, Reduce,
                                                      float*, cudaStream_t);
template void launch_segment_reduce_bwd_kernel<double>(const double*, const int64_t*,
                                                       const int64_t*, int64_t, int64_t,
                                                       Reduce, double*, cudaStream_t);

}  // namespace sparse3d
