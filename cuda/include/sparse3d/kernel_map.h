// Kernel maps of sparse convolution, output-stationary: nbr[o, k] is the input row that
// output row o reads through tap k, or -1. One row per output means every output has one
// writer, on the CPU and the GPU alike, so no step of a convolution needs atomics.
#pragma once

#include "sparse3d/coords.h"
#include "sparse3d/hash.h"

namespace sparse3d {

// Largest kernel size per axis of the row functions below.
constexpr int64_t kMaxKernel = 32;

// Fills nbr[o, 0:K] for one output row by looking its taps up in the input hash table.
// Taps are walked axis by axis, so the row costs no integer division.
SP3D_HD inline void kernel_map_row(
    // inputs
    const int32_t* out_coord,  // [4]
    const ConvGeom& g, const int64_t* hash_keys, const int32_t* hash_values,
    int64_t capacity,
    // outputs
    int32_t* nbr_row  // [K]
) {
  int64_t k = 0;
  for (int64_t k0 = 0; k0 < g.kernel[0]; ++k0) {
    const int64_t c0 = (int64_t)out_coord[1] * g.stride[0] - g.padding[0] + k0 * g.dilation[0];
    const bool in0 = c0 >= 0 && c0 < g.in_shape[0];
    for (int64_t k1 = 0; k1 < g.kernel[1]; ++k1) {
      const int64_t c1 = (int64_t)out_coord[2] * g.stride[1] - g.padding[1] + k1 * g.dilation[1];
      const bool in1 = in0 && c1 >= 0 && c1 < g.in_shape[1];
      for (int64_t k2 = 0; k2 < g.kernel[2]; ++k2, ++k) {
        const int64_t c2 = (int64_t)out_coord[3] * g.stride[2] - g.padding[2] + k2 * g.dilation[2];
        nbr_row[k] = in1 && c2 >= 0 && c2 < g.in_shape[2]
                         ? hash_find(hash_keys, hash_values, capacity,
                                     coord_key(out_coord[0], c0, c1, c2, g.in_shape))
                         : -1;
      }
    }
  }
}

// Output coordinates along axis d that input coordinate c reaches, with their taps
// (ascending); returns how many (at most kernel[d]).
SP3D_HD inline int64_t axis_outputs(int32_t c, int d, const ConvGeom& g, int64_t* out,
                                    int64_t* taps) {
  // int32 arithmetic: coordinates and padding fit. Strides are nearly always powers of two,
  // where a shift and a mask replace the two integer divisions per tap.
  const int32_t s = (int32_t)g.stride[d];
  const bool pow2 = (s & (s - 1)) == 0;
  int shift = 0;
  while ((1 << shift) < s) ++shift;
  int64_t n = 0;
  if (g.transposed) {
    for (int64_t kd = 0; kd < g.kernel[d]; ++kd) {
      const int64_t o = (int64_t)c * s - g.padding[d] + kd * g.dilation[d];
      if (o < 0 || o >= g.out_shape[d]) continue;
      out[n] = o;
      taps[n++] = kd;
    }
    return n;
  }
  for (int64_t kd = 0; kd < g.kernel[d]; ++kd) {
    const int32_t num = c + (int32_t)(g.padding[d] - kd * g.dilation[d]);
    if (num < 0) continue;
    const int32_t q = pow2 ? num >> shift : num / s;
    const int32_t rem = pow2 ? num & (s - 1) : num % s;
    if (rem != 0 || q >= g.out_shape[d]) continue;
    out[n] = q;
    taps[n++] = kd;
  }
  return n;
}

// Output sites one input row reaches: their keys and taps, in ascending tap order; returns
// how many (at most K). Each axis is solved once for its own taps, so a stride-2 3x3x3
// conv costs at most 8 sites, not 27 tap tests.
SP3D_HD inline int64_t conv_output_sites(
    // inputs
    const int32_t* in_coord,  // [4]
    const ConvGeom& g,
    // outputs
    int64_t* keys,  // [K]
    int64_t* taps   // [K]
) {
  int64_t out[3][kMaxKernel], tap[3][kMaxKernel], n_axis[3];
  for (int d = 0; d < 3; ++d) n_axis[d] = axis_outputs(in_coord[d + 1], d, g, out[d], tap[d]);
  int64_t n = 0;
  for (int64_t a = 0; a < n_axis[0]; ++a)
    for (int64_t b = 0; b < n_axis[1]; ++b)
      for (int64_t e = 0; e < n_axis[2]; ++e, ++n) {
        keys[n] = coord_key(in_coord[0], out[0][a], out[1][b], out[2][e], g.out_shape);
        taps[n] = (tap[0][a] * g.kernel[1] + tap[1][b]) * g.kernel[2] + tap[2][e];
      }
  return n;
}

// Candidate output keys of one input row per tap (kNoKey where a tap reaches no site).
SP3D_HD inline void conv_candidate_row(
    // inputs
    const int32_t* in_coord,  // [4]
    const ConvGeom& g,
    // outputs
    int64_t* keys  // [K]
) {
  int64_t out[3][kMaxKernel], tap[3][kMaxKernel], n_axis[3];
  for (int d = 0; d < 3; ++d) n_axis[d] = axis_outputs(in_coord[d + 1], d, g, out[d], tap[d]);
  const int64_t K = g.kernel[0] * g.kernel[1] * g.kernel[2];
  for (int64_t k = 0; k < K; ++k) keys[k] = kNoKey;
  for (int64_t a = 0; a < n_axis[0]; ++a)
    for (int64_t b = 0; b < n_axis[1]; ++b)
      for (int64_t e = 0; e < n_axis[2]; ++e)
        keys[(tap[0][a] * g.kernel[1] + tap[1][b]) * g.kernel[2] + tap[2][e]] =
            coord_key(in_coord[0], out[0][a], out[1][b], out[2][e], g.out_shape);
}

}  // namespace sparse3d
