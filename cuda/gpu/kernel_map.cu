// CUDA kernels for kernel maps: hash build (atomicCAS on unique keys), one thread per
// output row for the lookups, candidate output keys of regular convs, and the transposed
// map. Every nbr / inv entry has one writer, so maps are deterministic.

#include "cuda_utils.cuh"
#include "launch.h"
#include "sparse3d/kernel_map.h"

namespace sparse3d {
namespace {

__global__ void hash_build_kernel(const int32_t* coords, int64_t N, ConvGeom g, int64_t* keys,
                                  int32_t* values, int64_t capacity) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= N) return;
  const int32_t* c = coords + 4 * i;
  hash_insert_device(keys, values, capacity, coord_key(c[0], c[1], c[2], c[3], g.in_shape),
                     (int32_t)i);
}

__global__ void kernel_map_kernel(const int32_t* out_coords, int64_t M, ConvGeom g,
                                  const int64_t* keys, const int32_t* values, int64_t capacity,
                                  int32_t* nbr) {
  const int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (o >= M) return;
  kernel_map_row(out_coords + 4 * o, g, keys, values, capacity, nbr + o * conv_taps(g));
}

__global__ void conv_candidates_kernel(const int32_t* coords, int64_t N, ConvGeom g,
                                       int64_t* cand) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= N) return;
  conv_candidate_row(coords + 4 * i, g, cand + i * conv_taps(g));
}

// nbr[o, k] = i for each valid candidate t, j = rows[t] = i * K + k, o = groups[t].
__global__ void conv_map_scatter_kernel(const int64_t* rows, const int64_t* groups, int64_t T,
                                        int64_t K, int32_t* nbr) {
  const int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (t >= T) return;
  nbr[groups[t] * K + rows[t] % K] = (int32_t)(rows[t] / K);
}

__global__ void keys_to_coords_kernel(const int64_t* keys, int64_t M, ConvGeom g,
                                      int32_t* coords) {
  const int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (o >= M) return;
  key_coord(keys[o], g.out_shape, coords + 4 * o);
}

__global__ void invert_kernel_map_kernel(const int32_t* nbr, int64_t M, int64_t K,
                                         int32_t* inv) {
  const int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (j >= M * K) return;
  const int32_t i = nbr[j];
  if (i >= 0) inv[(int64_t)i * K + j % K] = (int32_t)(j / K);
}

}  // namespace

void launch_hash_build_kernel(const int32_t* coords, int64_t N, const ConvGeom& g,
                              int64_t* keys, int32_t* values, int64_t capacity,
                              cudaStream_t stream) {
  if (N == 0) return;
  hash_build_kernel<<<blocks_for(N), kThreads, 0, stream>>>(coords, N, g, keys, values,
                                                             capacity);
  check_launch("hash_build_kernel");
}

void launch_kernel_map_kernel(const int32_t* out_coords, int64_t M, const ConvGeom& g,
                              const int64_t* keys, const int32_t* values, int64_t capacity,
                              int32_t* nbr, cudaStream_t stream) {
  if (M == 0) return;
  kernel_map_kernel<<<blocks_for(M), kThreads, 0, stream>>>(out_coords, M, g, keys, values,
                                                             capacity, nbr);
  check_launch("kernel_map_kernel");
}

void launch_conv_candidates_kernel(const int32_t* coords, int64_t N, const ConvGeom& g,
                                   int64_t* cand, cudaStream_t stream) {
  if (N == 0) return;
  conv_candidates_kernel<<<blocks_for(N), kThreads, 0, stream>>>(coords, N, g, cand);
  check_launch("conv_candidates_kernel");
}

void launch_conv_map_scatter_kernel(const int64_t* rows, const int64_t* groups, int64_t T,
                                    int64_t K, int32_t* nbr, cudaStream_t stream) {
  if (T == 0) return;
  conv_map_scatter_kernel<<<blocks_for(T), kThreads, 0, stream>>>(rows, groups, T, K, nbr);
  check_launch("conv_map_scatter_kernel");
}

void launch_keys_to_coords_kernel(const int64_t* keys, int64_t M, const ConvGeom& g,
                                  int32_t* coords, cudaStream_t stream) {
  if (M == 0) return;
  keys_to_coords_kernel<<<blocks_for(M), kThreads, 0, stream>>>(keys, M, g, coords);
  check_launch("keys_to_coords_kernel");
}

void launch_invert_kernel_map_kernel(const int32_t* nbr, int64_t M, int64_t K, int32_t* inv,
                                     cudaStream_t stream) {
  if (M * K == 0) return;
  invert_kernel_map_kernel<<<blocks_for(M * K), kThreads, 0, stream>>>(nbr, M, K, inv);
  check_launch("invert_kernel_map_kernel");
}

}  // namespace sparse3d
