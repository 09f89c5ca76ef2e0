// CUDA kernels for voxelization: one thread per point computes its voxel key (the same
// header code as the CPU), one thread per voxel decodes its key. Grouping and the stable
// placement of points use sort-based ATen ops in the glue (voxelize_glue.cpp).

#include "cuda_utils.cuh"
#include "launch.h"
#include "sparse3d/voxelize.h"

namespace sparse3d {
namespace {

template <typename scalar_t>
__global__ void point_keys_kernel(const scalar_t* points, const int32_t* batch, int64_t P,
                                  int64_t D, VoxelGrid<scalar_t> g, int64_t* keys) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= P) return;
  keys[i] = point_voxel_key(points + i * D, batch[i], g);
}

__global__ void coord_keys_kernel(const int32_t* coords, int64_t N, ConvGeom g,
                                  int64_t* keys) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= N) return;
  const int32_t* r = coords + 4 * i;
  const bool inside = r[0] >= 0 && r[1] >= 0 && r[1] < g.in_shape[0] && r[2] >= 0 &&
                      r[2] < g.in_shape[1] && r[3] >= 0 && r[3] < g.in_shape[2];
  keys[i] = inside ? coord_key(r[0], r[1], r[2], r[3], g.in_shape) : kNoKey;
}

}  // namespace

template <typename scalar_t>
void launch_point_keys_kernel(const scalar_t* points, const int32_t* batch, int64_t P,
                              int64_t D, const VoxelGrid<scalar_t>& g, int64_t* keys,
                              cudaStream_t stream) {
  if (P == 0) return;
  point_keys_kernel<<<blocks_for(P), kThreads, 0, stream>>>(points, batch, P, D, g, keys);
  check_launch("point_keys_kernel");
}

void launch_coord_keys_kernel(const int32_t* coords, int64_t N, const ConvGeom& g,
                              int64_t* keys, cudaStream_t stream) {
  if (N == 0) return;
  coord_keys_kernel<<<blocks_for(N), kThreads, 0, stream>>>(coords, N, g, keys);
  check_launch("coord_keys_kernel");
}

template void launch_point_keys_kernel<float>(const float*, const int32_t*, int64_t, int64_t,
                                              const VoxelGrid<float>&, int64_t*, cudaStream_t);
template void launch_point_keys_kernel<double>(const double*, const int32_t*, int64_t, int64_t,
                                               const VoxelGrid<double>&, int64_t*,
                                               cudaStream_t);

}  // namespace sparse3d
