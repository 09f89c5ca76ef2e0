// CUDA kernels for output-stationary sparse convolution: one thread per output element
// (forward), one per (tap, row chunk, Cin, Cout) partial then one per weight element for
// the chunk-ordered reduction (weight gradient). No atomics: the sums run in the same
// order as on the CPU (sparse3d/conv.h).

#include "cuda_utils.cuh"
#include "launch.h"
#include "sparse3d/conv.h"

namespace sparse3d {
namespace {

template <typename scalar_t>
__global__ void sparse_conv_kernel(const scalar_t* feats, const scalar_t* weight,
                                   const scalar_t* bias, const int32_t* nbr, int64_t M,
                                   int64_t K, int64_t Cin, int64_t Cout, scalar_t* out) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= M * Cout) return;
  const int64_t o = idx / Cout, co = idx % Cout;
  out[idx] = conv_output_element(feats, weight, nbr + o * K, K, Cin, Cout, co,
                                 bias ? bias[co] : scalar_t(0));
}

template <typename scalar_t>
__global__ void weight_grad_partial_kernel(const scalar_t* feats, const scalar_t* v_out,
                                           const int32_t* nbr, int64_t M, int64_t K,
                                           int64_t Cin, int64_t Cout, int64_t chunks,
                                           scalar_t* partial) {
  // partial: [K, chunks, Cin, Cout]
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= K * chunks * Cin * Cout) return;
  const int64_t co = idx % Cout, ci = (idx / Cout) % Cin, t = idx / (Cin * Cout);
  const int64_t k = t / chunks, ch = t % chunks;
  const int64_t o0 = ch * kWeightGradChunk;
  const int64_t o1 = o0 + kWeightGradChunk < M ? o0 + kWeightGradChunk : M;
  partial[idx] = conv_weight_grad_partial(feats, v_out, nbr, K, Cin, Cout, k, ci, co, o0, o1);
}

template <typename scalar_t>
__global__ void weight_grad_reduce_kernel(const scalar_t* partial, int64_t K, int64_t chunks,
                                          int64_t slice, scalar_t* v_weight) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= K * slice) return;
  const int64_t k = idx / slice, j = idx % slice;
  scalar_t s = scalar_t(0);
  for (int64_t ch = 0; ch < chunks; ++ch) s += partial[(k * chunks + ch) * slice + j];
  v_weight[idx] = s;
}

}  // namespace

template <typename scalar_t>
void launch_sparse_conv_kernel(const scalar_t* feats, const scalar_t* weight,
                               const scalar_t* bias, const int32_t* nbr, int64_t M, int64_t K,
                               int64_t Cin, int64_t Cout, scalar_t* out, cudaStream_t stream) {
  if (M * Cout == 0) return;
  sparse_conv_kernel<<<blocks_for(M * Cout), kThreads, 0, stream>>>(feats, weight, bias, nbr, M,
                                                                     K, Cin, Cout, out);
  check_launch("sparse_conv_kernel");
}

template <typename scalar_t>
void launch_sparse_conv_bwd_weight_kernel(const scalar_t* feats, const scalar_t* v_out,
                                          const int32_t* nbr, int64_t M, int64_t K,
                                          int64_t Cin, int64_t Cout, scalar_t* partial,
                                          scalar_t* v_weight, cudaStream_t stream) {
  const int64_t chunks = weight_grad_chunks(M), slice = Cin * Cout;
  if (K * slice == 0) return;
  if (chunks > 0) {
    weight_grad_partial_kernel<<<blocks_for(K * chunks * slice), kThreads, 0, stream>>>(
        feats, v_out, nbr, M, K, Cin, Cout, chunks, partial);
    check_launch("weight_grad_partial_kernel");
  }
  weight_grad_reduce_kernel<<<blocks_for(K * slice), kThreads, 0, stream>>>(partial, K, chunks,
                                                                            slice, v_weight);
  check_launch("weight_grad_reduce_kernel");
}

#define SP3D_INSTANTIATE(T)                                                                  \
  template void launch_sparse_conv_kernel<T>(const T*, const T*, const T*, const int32_t*, int64_t, \
                                             int64_t, int64_t, int64_t, T*, cudaStream_t);   \
  template void launch_sparse_conv_bwd_weight_kernel<T>(const T*, const T*, const int32_t*, \
                                                        int64_t, int64_t, int64_t, int64_t, \
                                                        T*, T*, cudaStream_t);
SP3D_INSTANTIATE(float)
SP3D_INSTANTIATE(double)
#undef SP3D_INSTANTIATE

}  // namespace sparse3d
