// CUDA kernels of march_rays: the occupied voxels' hash table (atomicCAS inserts), then one
// thread per ray counts its samples and, after the glue's scan, writes them at its offset;
// both passes walk the ray with the same march_ray as the CPU (sparse3d/ray_march.h), so
// every sample has one writer and the result is deterministic.

#include "cuda_utils.cuh"
#include "sparse3d/ray_march.h"

namespace sparse3d {
namespace {

__global__ void occupied_hash_kernel(const int64_t* occupied, int64_t M, int64_t* keys,
                                     int32_t* values, int64_t capacity) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= M || occupied[i] < 0) return;  // a negative key is no voxel of the grid
  hash_insert_device(keys, values, capacity, occupied[i], (int32_t)i);
}

__global__ void march_rays_count_kernel(MarchInputs in, MarchGrid g, OccupiedTable occ,
                                        const float* max_steps, int64_t R, int64_t* counts) {
  const int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (r >= R) return;
  SkipSteps skip;
  counts[r] = march_ray(in.ray(r), g, occ, march_step_count(*max_steps), skip);
}

__global__ void march_rays_fill_kernel(MarchInputs in, MarchGrid g, OccupiedTable occ,
                                       const float* max_steps, int64_t R,
                                       const int64_t* offsets, float* t) {
  const int64_t r = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (r >= R) return;
  WriteSteps write{t + offsets[r]};
  march_ray(in.ray(r), g, occ, march_step_count(*max_steps), write);
}

}  // namespace

void launch_occupied_hash_kernel(const int64_t* occupied, int64_t M, int64_t* keys,
                                 int32_t* values, int64_t capacity, cudaStream_t stream) {
  if (M == 0) return;
  occupied_hash_kernel<<<blocks_for(M), kThreads, 0, stream>>>(occupied, M, keys, values,
                                                                capacity);
  check_launch("occupied_hash_kernel");
}

void launch_march_rays_count_kernel(const MarchInputs& in, const MarchGrid& g,
                                    const OccupiedTable& occ, const float* max_steps, int64_t R,
                                    int64_t* counts, cudaStream_t stream) {
  if (R == 0) return;
  march_rays_count_kernel<<<blocks_for(R), kThreads, 0, stream>>>(in, g, occ, max_steps, R,
                                                                   counts);
  check_launch("march_rays_count_kernel");
}

void launch_march_rays_fill_kernel(const MarchInputs& in, const MarchGrid& g,
                                   const OccupiedTable& occ, const float* max_steps, int64_t R,
                                   const int64_t* offsets, float* t, cudaStream_t stream) {
  if (R == 0) return;
  march_rays_fill_kernel<<<blocks_for(R), kThreads, 0, stream>>>(in, g, occ, max_steps, R,
                                                                  offsets, t);
  check_launch("march_rays_fill_kernel");
}

}  // namespace sparse3d
