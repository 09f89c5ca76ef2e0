// CUDA kernels for deterministic batch-norm statistics: one thread per fixed chunk of rows
// writes that chunk's partial statistics, one thread per channel combines the chunks in
// order; the same header code and summation tree as the CPU (sparse3d/batch_norm.h).

#include "cuda_utils.cuh"
#include "launch.h"
#include "sparse3d/batch_norm.h"

namespace sparse3d {
namespace {

// Few threads per block: each thread reduces a whole chunk of rows.
constexpr int kStatThreads = 128;

template <typename scalar_t>
__global__ void chunk_stats_kernel(const scalar_t* x, int64_t N, int64_t C, double* means,
                                   double* m2s) {
  const int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (k >= stat_chunks(N)) return;
  const int64_t r1 = (k + 1) * kStatChunk < N ? (k + 1) * kStatChunk : N;
  chunk_mean_m2(x, k * kStatChunk, r1, C, means + k * C, m2s + k * C);
}

template <typename scalar_t>
__global__ void combine_stats_kernel(const double* means, const double* m2s, int64_t N,
                                     int64_t C, scalar_t* mean, scalar_t* var) {
  const int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (c >= C) return;
  double m, v;
  combine_mean_m2(means, m2s, stat_chunks(N), N, C, c, &m, &v);
  mean[c] = (scalar_t)m;
  var[c] = (scalar_t)v;
}

template <typename scalar_t>
__global__ void chunk_grad_sums_kernel(const scalar_t* v, const scalar_t* x,
                                       const scalar_t* mean, int64_t N, int64_t C, double* a,
                                       double* b) {
  const int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (k >= stat_chunks(N)) return;
  const int64_t r1 = (k + 1) * kStatChunk < N ? (k + 1) * kStatChunk : N;
  chunk_grad_sums(v, x, mean, k * kStatChunk, r1, C, a + k * C, b + k * C);
}

template <typename scalar_t>
__global__ void combine_sums_kernel(const double* a, const double* b, int64_t chunks,
                                    int64_t C, scalar_t* sum_v, scalar_t* sum_vx) {
  const int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (c >= C) return;
  combine_grad_sums(a, b, chunks, C, c, sum_v, sum_vx);
}

template <typename scalar_t>
__global__ void affine_act_kernel(const scalar_t* x, const scalar_t* scale,
                                  const scalar_t* shift, const scalar_t* residual, bool relu,
                                  int64_t N, int64_t C, scalar_t* out) {
  const int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (e >= N * C) return;
  const int64_t c = e % C;
  out[e] = affine_act(x[e], scale[c], shift[c], residual ? residual[e] : scalar_t(0), relu);
}

}  // namespace

template <typename scalar_t>
void launch_affine_act_kernel(const scalar_t* x, const scalar_t* scale, const scalar_t* shift,
                              const scalar_t* residual, bool relu, int64_t N, int64_t C,
                              scalar_t* out, cudaStream_t stream) {
  if (N * C == 0) return;
  affine_act_kernel<<<blocks_for(N * C, kThreads), kThreads, 0, stream>>>(x, scale, shift, residual, relu, N, C, out);
  check_launch("affine_act_kernel");
}

template <typename scalar_t>
void launch_batch_norm_stats_kernel(const scalar_t* x, int64_t N, int64_t C, double* scratch,
                                    scalar_t* mean, scalar_t* var, cudaStream_t stream) {
  if (C == 0) return;
  const int64_t chunks = stat_chunks(N);
  double* means = scratch;
  double* m2s = scratch + chunks * C;
  if (chunks > 0) {
    chunk_stats_kernel<<<blocks_for(chunks, kStatThreads), kStatThreads, 0, stream>>>(x, N, C, means, m2s);
    check_launch("chunk_stats_kernel");
  }
  combine_stats_kernel<<<blocks_for(C, kStatThreads), kStatThreads, 0, stream>>>(means, m2s, N, C, mean, var);
  check_launch("combine_stats_kernel");
}

template <typename scalar_t>
void launch_batch_norm_bwd_reduce_kernel(const scalar_t* v, const scalar_t* x,
                                         const scalar_t* mean, int64_t N, int64_t C,
                                         double* scratch, scalar_t* sum_v, scalar_t* sum_vx,
                                         cudaStream_t stream) {
  if (C == 0) return;
  const int64_t chunks = stat_chunks(N);
  if (chunks > 0) {
    chunk_grad_sums_kernel<<<blocks_for(chunks, kStatThreads), kStatThreads, 0, stream>>>(
        v, x, mean, N, C, scratch, scratch + chunks * C);
    check_launch("chunk_grad_sums_kernel");
  }
  combine_sums_kernel<<<blocks_for(C, kStatThreads), kStatThreads, 0, stream>>>(scratch, scratch + chunks * C,
                                                              chunks, C, sum_v, sum_vx);
  check_launch("combine_sums_kernel");
}

#define SP3D_INSTANTIATE(T)                                                                   \
  template void launch_batch_norm_stats_kernel<T>(const T*, int64_t, int64_t, double*, T*, T*, \
                                                  cudaStream_t);                              \
  template void launch_batch_norm_bwd_reduce_kernel<T>(const T*, const T*, const T*, int64_t,  \
                                                       int64_t, double*, T*, T*, cudaStream_t); \
  template void launch_affine_act_kernel<T>(const T*, const T*, const T*, const T*, bool,      \
                                            int64_t, int64_t, T*, cudaStream_t);
SP3D_INSTANTIATE(float)
SP3D_INSTANTIATE(double)
#undef SP3D_INSTANTIATE

}  // namespace sparse3d
