// CUDA kernels of trivector_features. Forward: one thread per (sample, component) output,
// summing the sample's tensors in slot order. Backward: one block per tensor (its pairs
// sorted by tensor, samples ascending, in the glue); inside it one thread per (axis,
// component) row of the tensor's gradient, which accumulates the pairs in order. Every
// output has one writer and no atomics are used, so results are the same run to run.

#include "cuda_utils.cuh"
#include "sparse3d/trivector.h"

namespace sparse3d {
namespace {

// Threads per block of the backward: a tensor has 3 R rows (R = 16..48 in Strivec).
constexpr int kRowThreads = 128;

template <typename scalar_t>
__global__ void trivector_features_kernel(const scalar_t* points, const int64_t* index,
                                          const scalar_t* weights, const scalar_t* vectors,
                                          const scalar_t* centers, int64_t S, int64_t K,
                                          int64_t N, int64_t R, TrivectorGeom<scalar_t> g,
                                          scalar_t* out) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= S * R) return;
  const int64_t s = idx / R, r = idx % R, D = g.D;
  scalar_t acc = scalar_t(0);
  for (int64_t k = 0; k < K; ++k) {
    const int64_t n = index[s * K + k];
    if (n < 0 || n >= N) continue;
    int64_t i0[3];
    scalar_t f[3];
    trivector_cell(points + 3 * s, centers + 3 * n, g, i0, f);
    scalar_t l[3];  // the component's three vectors at the sample
    for (int a = 0; a < 3; ++a) {
      const scalar_t* row = vectors + ((n * 3 + a) * R + r) * D + i0[a];
      l[a] = trivector_lerp(row[0], row[1], f[a]);
    }
    acc += weights[s * K + k] * (l[0] * l[1] * l[2]);
  }
  out[idx] = acc;
}

template <typename scalar_t>
__global__ void trivector_features_bwd_kernel(const scalar_t* v_out, const scalar_t* points,
                                              const scalar_t* weights, const scalar_t* vectors,
                                              const scalar_t* centers, const int64_t* order,
                                              const int64_t* offsets, int64_t K, int64_t R,
                                              TrivectorGeom<scalar_t> g, scalar_t* v_vectors) {
  const int64_t n = blockIdx.x, D = g.D;
  const int64_t begin = offsets[n], end = offsets[n + 1];
  for (int64_t row = threadIdx.x; row < 3 * R; row += blockDim.x) {
    const int64_t a = row / R, r = row % R;
    const int64_t b = (a + 1) % 3, c = (a + 2) % 3;  // the other two axes
    const scalar_t* va = vectors + ((n * 3 + a) * R + r) * D;
    const scalar_t* vb = vectors + ((n * 3 + b) * R + r) * D;
    const scalar_t* vc = vectors + ((n * 3 + c) * R + r) * D;
    scalar_t* grad = v_vectors + ((n * 3 + a) * R + r) * D;  // this thread's row
    for (int64_t d = 0; d < D; ++d) grad[d] = scalar_t(0);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t pair = order[i], s = pair / K;
      int64_t i0[3];
      scalar_t f[3];
      trivector_cell(points + 3 * s, centers + 3 * n, g, i0, f);
      const scalar_t t = v_out[s * R + r] * weights[pair] *
                         (trivector_lerp(vb[i0[b]], vb[i0[b] + 1], f[b]) *
                          trivector_lerp(vc[i0[c]], vc[i0[c] + 1], f[c]));
      grad[i0[a]] += t * (scalar_t(1) - f[a]);
      grad[i0[a] + 1] += t * f[a];
    }
  }
}

}  // namespace

template <typename scalar_t>
void launch_trivector_features_kernel(const scalar_t* points, const int64_t* index,
                                      const scalar_t* weights, const scalar_t* vectors,
                                      const scalar_t* centers, int64_t S, int64_t K, int64_t N,
                                      int64_t R, const TrivectorGeom<scalar_t>& g,
                                      scalar_t* out, cudaStream_t stream) {
  if (S * R == 0) return;
  trivector_features_kernel<<<blocks_for(S * R), kThreads, 0, stream>>>(
      points, index, weights, vectors, centers, S, K, N, R, g, out);
  check_launch("trivector_features_kernel");
}

template <typename scalar_t>
void launch_trivector_features_bwd_kernel(const scalar_t* v_out, const scalar_t* points,
                                          const scalar_t* weights, const scalar_t* vectors,
                                          const scalar_t* centers, const int64_t* order,
                                          const int64_t* offsets, int64_t N, int64_t K,
                                          int64_t R, const TrivectorGeom<scalar_t>& g,
                                          scalar_t* v_vectors, cudaStream_t stream) {
  if (N * R == 0) return;
  trivector_features_bwd_kernel<<<(unsigned)N, kRowThreads, 0, stream>>>(
      v_out, points, weights, vectors, centers, order, offsets, K, R, g, v_vectors);
  check_launch("trivector_features_bwd_kernel");
}

#define SP3D_INSTANTIATE(T)                                                                    \
  template void launch_trivector_features_kernel<T>(const T*, const int64_t*, const T*,        \
                                                    const T*, const T*, int64_t, int64_t,      \
                                                    int64_t, int64_t, const TrivectorGeom<T>&, \
                                                    T*, cudaStream_t);                         \
  template void launch_trivector_features_bwd_kernel<T>(                                       \
      const T*, const T*, const T*, const T*, const T*, const int64_t*, const int64_t*,        \
      int64_t, int64_t, int64_t, const TrivectorGeom<T>&, T*, cudaStream_t);
SP3D_INSTANTIATE(float)
SP3D_INSTANTIATE(double)
#undef SP3D_INSTANTIATE

}  // namespace sparse3d
