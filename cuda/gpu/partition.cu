// CUDA kernels of the DSVT set partition: one thread per voxel for the window keys, one
// thread per (ordering, set) for the fill. The sort between them runs in the ATen host steps
// (../glue/partition_args.h).

#include "cuda_utils.cuh"
#include "launch.h"
#include "sparse3d/partition.h"

namespace sparse3d {
namespace {

__global__ void window_keys_kernel(const int32_t* coords, int64_t N, WindowGeom g,
                                   int32_t* in_win, int64_t* keys) {
  const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= N) return;
  voxel_window_keys(coords + 4 * i, g, in_win + 3 * i, keys + i, keys + N + i);
}

__global__ void fill_sets_kernel(const int64_t* order, int64_t N, const int64_t* win_begin,
                                 const int64_t* win_count, const int64_t* win_set_begin,
                                 const int64_t* set_window, int64_t M, int64_t S,
                                 int64_t* inds, bool* mask, int64_t* first_slot) {
  const int64_t s = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (s >= 2 * M) return;
  const int64_t o = s / M, set = s % M, w = set_window[set], n = win_count[w];
  fill_set(order + o * N + win_begin[w], n, (n + S - 1) / S, set - win_set_begin[w], S, set,
           inds + s * S, mask + s * S, first_slot + o * N);
}

}  // namespace

void launch_window_keys_kernel(const int32_t* coords, int64_t N, const WindowGeom& g,
                               int32_t* in_win, int64_t* keys, cudaStream_t stream) {
  if (N == 0) return;
  window_keys_kernel<<<blocks_for(N), kThreads, 0, stream>>>(coords, N, g, in_win, keys);
  check_launch("window_keys_kernel");
}

void launch_fill_sets_kernel(const int64_t* order, int64_t N, const int64_t* win_begin,
                             const int64_t* win_count, const int64_t* win_set_begin,
                             const int64_t* set_window, int64_t M, int64_t S, int64_t* inds,
                             bool* mask, int64_t* first_slot, cudaStream_t stream) {
  if (M == 0) return;
  fill_sets_kernel<<<blocks_for(2 * M), kThreads, 0, stream>>>(
      order, N, win_begin, win_count, win_set_begin, set_window, M, S, inds, mask, first_slot);
  check_launch("fill_sets_kernel");
}

}  // namespace sparse3d
