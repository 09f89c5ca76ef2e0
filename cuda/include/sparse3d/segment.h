// Segment reductions over CSR-style segments: segment s owns rows
// [offsets[s], offsets[s + 1]) of a row-major values array [N, C].
#pragma once

#include "sparse3d/common.h"

namespace sparse3d {

// Reduces channel c of one segment. Empty segments give 0 (and arg -1 for Max).
// Rows are visited in ascending order, so Max keeps the first row among ties.
template <typename scalar_t>
SP3D_HD inline void segment_reduce_channel(
    // inputs
    const scalar_t* values,  // [N, C]
    int64_t begin, int64_t end, int64_t C, int64_t c, Reduce reduce,
    // outputs
    scalar_t* out,  // one value
    int64_t* arg    // one index, written only for Max
) {
  if (reduce == Reduce::Max) {
    int64_t best = -1;
    scalar_t best_v = scalar_t(0);
    for (int64_t i = begin; i < end; ++i) {
      const scalar_t v = values[i * C + c];
      if (best < 0 || v > best_v) {
        best = i;
        best_v = v;
      }
    }
    *out = best_v;
    *arg = best;
    return;
  }
  scalar_t acc = scalar_t(0);
  for (int64_t i = begin; i < end; ++i) acc += values[i * C + c];
  if (reduce == Reduce::Mean && end > begin) acc /= scalar_t(end - begin);
  *out = acc;
}

// Gradient of segment_reduce_channel for every row of the segment (each row written once).
template <typename scalar_t>
SP3D_HD inline void segment_reduce_channel_bwd(
    // inputs
    scalar_t v_out, int64_t arg, int64_t begin, int64_t end, int64_t C, int64_t c,
    Reduce reduce,
    // outputs
    scalar_t* v_values  // [N, C]
) {
  if (reduce == Reduce::Max) {
    for (int64_t i = begin; i < end; ++i) v_values[i * C + c] = i == arg ? v_out : scalar_t(0);
    return;
  }
  const scalar_t g =
      reduce == Reduce::Mean && end > begin ? v_out / scalar_t(end - begin) : v_out;
  for (int64_t i = begin; i < end; ++i) v_values[i * C + c] = g;
}

}  // namespace sparse3d
