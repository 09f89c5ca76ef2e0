// Per-channel statistics of a row-major [N, C] array over fixed chunks of rows, combined
// in chunk order: the summation tree is fixed, so results do not depend on the thread
// count (CPU) or the launch shape (GPU). Accumulation is in double.
#pragma once

#include "sparse3d/common.h"

namespace sparse3d {

// Rows per chunk of the statistics; fixed so the summation tree is too.
constexpr int64_t kStatChunk = 4096;

SP3D_HD inline int64_t stat_chunks(int64_t N) { return (N + kStatChunk - 1) / kStatChunk; }

// Mean and sum of squared deviations (M2) of every channel over rows [r0, r1): two
// passes, rows outer so the reads are sequential; each channel sums rows in order.
template <typename scalar_t>
SP3D_HD inline void chunk_mean_m2(
    // inputs
    const scalar_t* x, int64_t r0, int64_t r1, int64_t C,
    // outputs
    double* mean,  // [C]
    double* m2     // [C]
) {
  for (int64_t c = 0; c < C; ++c) mean[c] = m2[c] = 0.0;
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = 0; c < C; ++c) mean[c] += (double)x[r * C + c];
  for (int64_t c = 0; c < C; ++c) mean[c] = r1 > r0 ? mean[c] / (double)(r1 - r0) : 0.0;
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const double d = (double)x[r * C + c] - mean[c];
      m2[c] += d * d;
    }
}

// Combines chunk statistics in chunk order (Chan et al.'s pairwise update) into the
// biased variance and the mean of the channel.
SP3D_HD inline void combine_mean_m2(const double* means, const double* m2s, int64_t chunks,
                                    int64_t N, int64_t C, int64_t c, double* mean,
                                    double* var) {
  double n = 0.0, m = 0.0, q = 0.0;
  for (int64_t k = 0; k < chunks; ++k) {
    const double nb = (double)((k + 1) * kStatChunk < N ? kStatChunk : N - k * kStatChunk);
    const double delta = means[k * C + c] - m, total = n + nb;
    m += delta * nb / total;
    q += m2s[k * C + c] + delta * delta * n * nb / total;
    n = total;
  }
  *mean = m;
  *var = N > 0 ? q / (double)N : 0.0;
}

// Sums of v and of v * (x - mean) of every channel over rows [r0, r1).
template <typename scalar_t>
SP3D_HD inline void chunk_grad_sums(
    // inputs
    const scalar_t* v, const scalar_t* x, const scalar_t* mean, int64_t r0, int64_t r1,
    int64_t C,
    // outputs
    double* sum_v,  // [C]
    double* sum_vx  // [C]
) {
  for (int64_t c = 0; c < C; ++c) sum_v[c] = sum_vx[c] = 0.0;
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const double g = (double)v[r * C + c];
      sum_v[c] += g;
      sum_vx[c] += g * ((double)x[r * C + c] - (double)mean[c]);
    }
}

// Adds the per-chunk sums of chunk_grad_sums for channel c in chunk order (a fixed order,
// so the result does not depend on how chunks were scheduled).
template <typename scalar_t>
SP3D_HD inline void combine_grad_sums(const double* a, const double* b, int64_t chunks, int64_t C,
                                      int64_t c, scalar_t* sum_v, scalar_t* sum_vx) {
  double s = 0.0, t = 0.0;
  for (int64_t k = 0; k < chunks; ++k) {
    s += a[k * C + c];
    t += b[k * C + c];
  }
  sum_v[c] = (scalar_t)s;
  sum_vx[c] = (scalar_t)t;
}

// The batch-norm affine step fused with what follows it in a residual block:
// act(x * scale + shift + residual), where act is ReLU or the identity. Summed in that
// order; a NaN stays NaN through the ReLU, as torch's.
template <typename scalar_t>
SP3D_HD inline scalar_t affine_act(scalar_t x, scalar_t scale, scalar_t shift,
                                   scalar_t residual, bool relu) {
  const scalar_t y = x * scale + shift + residual;
  return relu && y < scalar_t(0) ? scalar_t(0) : y;
}

}  // namespace sparse3d
