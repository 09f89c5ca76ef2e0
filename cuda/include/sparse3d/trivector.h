// Tri-vector (CP) local tensors (sparse3d/fields/trivector.py): where a sample falls on a
// tensor's vectors, shared by the CPU and CUDA kernels. A tensor's D values per vector
// span its cube [c - h, c + h] (value 0 on the low face, D - 1 on the high one).
#pragma once

#include "sparse3d/common.h"

typedef struct CUstream_st* cudaStream_t;

namespace sparse3d {

// The constants of the sample-to-vector mapping, in the tensors' precision, rounded from
// the op's arguments as the reference rounds its Python scalars.
template <typename scalar_t>
struct TrivectorGeom {
  scalar_t half_size;  // h
  scalar_t edge;       // 2 h
  scalar_t last;       // D - 1
  int64_t D;
};

// Per axis a, the sample's position u = clamp((p - c + h) / (2 h) * (D - 1), 0, D - 1)
// between values i0[a] (<= D - 2) and i0[a] + 1, and its fraction f[a] = u - i0[a]
// toward the upper one: the float ops of trivector_features_ref. A NaN position clamps to 0.
template <typename scalar_t>
SP3D_HD inline void trivector_cell(const scalar_t* p, const scalar_t* c,
                                   const TrivectorGeom<scalar_t>& g, int64_t* i0, scalar_t* f) {
  for (int a = 0; a < 3; ++a) {
    const scalar_t u = (p[a] - c[a] + g.half_size) / g.edge * g.last;
    const scalar_t clamped = u > scalar_t(0) ? (u < g.last ? u : g.last) : scalar_t(0);
    const int64_t i = (int64_t)clamped;  // floor, as clamped >= 0
    i0[a] = i < g.D - 2 ? i : g.D - 2;
    f[a] = clamped - (scalar_t)i0[a];
  }
}

// The vector interpolated at fraction f between its values lo and hi.
template <typename scalar_t>
SP3D_HD inline scalar_t trivector_lerp(scalar_t lo, scalar_t hi, scalar_t f) {
  return lo * (scalar_t(1) - f) + hi * f;
}

// --- CUDA launchers (trivector.cu)
// out [S, R] = sum_k w[s, k] prod_a lerp(vectors[index[s, k], a, r], u_a); slots with an
// index outside [0, N) are skipped
template <typename scalar_t>
void launch_trivector_features_kernel(const scalar_t* points, const int64_t* index,
                                      const scalar_t* weights, const scalar_t* vectors,
                                      const scalar_t* centers, int64_t S, int64_t K, int64_t N,
                                      int64_t R, const TrivectorGeom<scalar_t>& g,
                                      scalar_t* out, cudaStream_t stream);
// v_vectors [N, 3, R, D]: tensor n sums the pairs order[offsets[n]:offsets[n + 1]]
// (flat (sample, slot) positions sorted by tensor, samples ascending) in order
template <typename scalar_t>
void launch_trivector_features_bwd_kernel(const scalar_t* v_out, const scalar_t* points,
                                          const scalar_t* weights, const scalar_t* vectors,
                                          const scalar_t* centers, const int64_t* order,
                                          const int64_t* offsets, int64_t N, int64_t K,
                                          int64_t R, const TrivectorGeom<scalar_t>& g,
                                          scalar_t* v_vectors, cudaStream_t stream);

}  // namespace sparse3d
