// Voxel coordinates as linear int64 keys, and the geometry of a 3-D sparse convolution.
// Coordinates are int32 rows (batch, c0, c1, c2) indexed against a spatial shape
// (S0, S1, S2); keys are batch-major, row-major: ((b * S0 + c0) * S1 + c1) * S2 + c2, so
// sorting keys sorts voxels by (batch, c0, c1, c2) and no int32 volume limit applies.
#pragma once

#include "sparse3d/common.h"

namespace sparse3d {

// A missing neighbour / empty hash slot.
constexpr int64_t kNoKey = -1;

SP3D_HD inline int64_t coord_key(int64_t b, int64_t c0, int64_t c1, int64_t c2,
                                 const int64_t* shape) {  // shape: [3]
  return ((b * shape[0] + c0) * shape[1] + c1) * shape[2] + c2;
}

// Inverse of coord_key; coord: [4] (batch, c0, c1, c2).
SP3D_HD inline void key_coord(int64_t key, const int64_t* shape, int32_t* coord) {
  coord[3] = (int32_t)(key % shape[2]);
  key /= shape[2];
  coord[2] = (int32_t)(key % shape[1]);
  key /= shape[1];
  coord[1] = (int32_t)(key % shape[0]);
  coord[0] = (int32_t)(key / shape[0]);
}

// Kernel, stride, padding and dilation per spatial dim, and the two grids they connect.
// Tap k = (k0 * K1 + k1) * K2 + k2 (the KRSC weight order) reads the input at
// out * stride - padding + k * dilation: cross-correlation, as torch's conv3d.
struct ConvGeom {
  int64_t in_shape[3];
  int64_t out_shape[3];
  int64_t kernel[3];
  int64_t stride[3];
  int64_t padding[3];
  int64_t dilation[3];
  // Transposed (coordinate-generating) conv: input c reaches output c * stride - padding +
  // k * dilation through tap k, instead of the regular conv's c = out * stride - padding +
  // k * dilation.
  bool transposed = false;
};

SP3D_HD inline int64_t conv_taps(const ConvGeom& g) {
  return g.kernel[0] * g.kernel[1] * g.kernel[2];
}

}  // namespace sparse3d
