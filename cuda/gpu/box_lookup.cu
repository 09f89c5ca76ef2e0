// CUDA kernels of box_lookup: the hash of the occupied keys (atomicCAS on unique keys),
// then one thread per point (box_lookup_point). Every output has one writer.

#include "cuda_utils.cuh"
#include "sparse3d/box_lookup.h"

namespace sparse3d {
namespace {

__global__ void box_hash_build_kernel(const int64_t* occupied, int64_t N, int64_t* keys,
                                      int32_t* values, int64_t capacity) {
  const int64_t n = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (n >= N) return;
  hash_insert_device(keys, values, capacity, occupied[n], (int32_t)n);
}

__global__ void box_lookup_kernel(const float* points, int64_t S, BoxGrid g, const int64_t* keys,
                                  const int32_t* values, int64_t capacity, int64_t K,
                                  int64_t* index, float* weights) {
  const int64_t s = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (s >= S) return;
  box_lookup_point(points + 3 * s, g, keys, values, capacity, K, index + s * K, weights + s * K);
}

}  // namespace

void launch_box_hash_build_kernel(const int64_t* occupied, int64_t N, int64_t* keys,
                                  int32_t* values, int64_t capacity, cudaStream_t stream) {
  if (N == 0) return;
  box_hash_build_kernel<<<blocks_for(N), kThreads, 0, stream>>>(occupied, N, keys, values,
                                                                capacity);
  check_launch("box_hash_build_kernel");
}

void launch_box_lookup_kernel(const float* points, int64_t S, const BoxGrid& g,
                              const int64_t* keys, const int32_t* values, int64_t capacity,
                              int64_t K, int64_t* index, float* weights, cudaStream_t stream) {
  if (S == 0) return;
  box_lookup_kernel<<<blocks_for(S), kThreads, 0, stream>>>(points, S, g, keys, values, capacity,
                                                            K, index, weights);
  check_launch("box_lookup_kernel");
}

}  // namespace sparse3d
