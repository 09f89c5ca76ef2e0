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

// Candidate output keys of one input row (kNoKey where a tap reaches no output site).
// Each axis is solved once for its own taps (kernel[d] divisions, not K).
SP3D_HD inline void conv_candidate_row(
    // inputs
    const int32_t* in_coord,  // [4]
    const ConvGeom& g,
    // outputs
    int64_t* keys  // [K]
) {
  int64_t out[3][kMaxKernel];  // output coordinate per axis and tap, -1 if none
  for (int d = 0; d < 3; ++d)
    for (int64_t kd = 0; kd < g.kernel[d]; ++kd) {
      // int32 arithmetic: coordinates and padding fit, and 32-bit division is much cheaper.
      const int32_t num = in_coord[d + 1] + (int32_t)(g.padding[d] - kd * g.dilation[d]);
      const int32_t s = (int32_t)g.stride[d];
      const int64_t q = num >= 0 && num % s == 0 ? num / s : -1;
      out[d][kd] = q < g.out_shape[d] ? q : -1;
    }
  int64_t k = 0;
  for (int64_t k0 = 0; k0 < g.kernel[0]; ++k0)
    for (int64_t k1 = 0; k1 < g.kernel[1]; ++k1)
      for (int64_t k2 = 0; k2 < g.kernel[2]; ++k2, ++k)
        keys[k] = out[0][k0] >= 0 && out[1][k1] >= 0 && out[2][k2] >= 0
                      ? coord_key(in_coord[0], out[0][k0], out[1][k1], out[2][k2], g.out_shape)
                      : kNoKey;
}

}  // namespace sparse3d
