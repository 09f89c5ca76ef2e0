// Output-stationary sparse convolution math shared by the CPU and CUDA kernels.
//   forward:        out[o, co]   = bias[co] + sum_k sum_ci feats[nbr[o, k], ci] * weight[k, ci, co]
//   weight grad:    v_w[k, ci, co] = sum_o feats[nbr[o, k], ci] * v_out[o, co]
// Sums run over k, then ci, in ascending order (forward) and over fixed chunks of output
// rows reduced in chunk order (weight grad), on every device and at every thread count.
#pragma once

#include "sparse3d/common.h"

namespace sparse3d {

// Output rows per partial sum of the weight gradient. Fixed (not derived from the thread
// count) so that the summation tree, hence every bit of the result, is fixed too.
constexpr int64_t kWeightGradChunk = 1024;

SP3D_HD inline int64_t weight_grad_chunks(int64_t M) {
  return (M + kWeightGradChunk - 1) / kWeightGradChunk;
}

// One output element of the forward pass; the sum starts from `bias` (the layer's bias
// for that channel, or 0).
template <typename scalar_t>
SP3D_HD inline scalar_t conv_output_element(
    // inputs
    const scalar_t* feats,    // [N, Cin]
    const scalar_t* weight,   // [K, Cin, Cout]
    const int32_t* nbr_row,   // [K]
    int64_t K, int64_t Cin, int64_t Cout, int64_t co, scalar_t bias) {
  scalar_t acc = bias;
  for (int64_t k = 0; k < K; ++k) {
    const int32_t n = nbr_row[k];
    if (n < 0) continue;
    const scalar_t* x = feats + (int64_t)n * Cin;
    const scalar_t* w = weight + k * Cin * Cout + co;
    for (int64_t ci = 0; ci < Cin; ++ci) acc += x[ci] * w[ci * Cout];
  }
  return acc;
}

// One element of one chunk's partial weight gradient (output rows [o0, o1)).
template <typename scalar_t>
SP3D_HD inline scalar_t conv_weight_grad_partial(
    // inputs
    const scalar_t* feats,  // [N, Cin]
    const scalar_t* v_out,  // [M, Cout]
    const int32_t* nbr,     // [M, K]
    int64_t K, int64_t Cin, int64_t Cout, int64_t k, int64_t ci, int64_t co, int64_t o0,
    int64_t o1) {
  scalar_t acc = scalar_t(0);
  for (int64_t o = o0; o < o1; ++o) {
    const int32_t n = nbr[o * K + k];
    if (n >= 0) acc += feats[(int64_t)n * Cin + ci] * v_out[o * Cout + co];
  }
  return acc;
}

}  // namespace sparse3d
