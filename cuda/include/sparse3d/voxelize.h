// Point-to-voxel assignment shared by the CPU and CUDA voxelization kernels.
#pragma once

#include <math.h>

#include "sparse3d/coords.h"

namespace sparse3d {

// Grid of a voxelization: lower corner and voxel size per axis (x, y, z), cells per axis.
template <typename scalar_t>
struct VoxelGrid {
  scalar_t lower[3];
  scalar_t size[3];
  int64_t shape[3];
};

// Key of the voxel holding point (x, y, z) of sample `batch`, or kNoKey when the point is
// outside the grid or not finite. The cell is floor((p - lower) / size), computed in the
// points' own precision so that the torch reference rounds identically.
template <typename scalar_t>
SP3D_HD inline int64_t point_voxel_key(const scalar_t* p, int32_t batch,
                                       const VoxelGrid<scalar_t>& g) {
  int64_t c[3];
  for (int d = 0; d < 3; ++d) {
    const scalar_t t = floor((p[d] - g.lower[d]) / g.size[d]);
    if (!(t >= scalar_t(0) && t < (scalar_t)g.shape[d])) return kNoKey;  // also rejects NaN
    c[d] = (int64_t)t;
  }
  if (batch < 0) return kNoKey;
  return coord_key(batch, c[0], c[1], c[2], g.shape);
}

}  // namespace sparse3d
