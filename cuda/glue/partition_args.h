// Host steps of the DSVT set partition, shared by the CPU and CUDA glue. Each backend runs
// two kernels: window keys per voxel, then one fill per (ordering, set). Everything around
// them (checks, allocation, the stable sort and the window runs between them) is
// device-agnostic ATen, written here once:
//   WindowKeysCall call = prepare_window_keys(...);  // then the window-key kernel
//   FillSetsCall sets = prepare_fill_sets(call);     // then the set-fill kernel
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/unique_consecutive.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include "sparse3d/partition.h"

namespace sparse3d {

inline WindowGeom make_window_geom(const at::Tensor& coords, c10::IntArrayRef sparse_shape,
                                   c10::IntArrayRef window, c10::IntArrayRef shift,
                                   int64_t set_size) {
  TORCH_CHECK(coords.dim() == 2 && coords.size(1) == 4 && coords.scalar_type() == at::kInt,
              "sparse3d.set_partition: coords must be int32 [N, 4] (batch, x, y, z), got ",
              coords.scalar_type(), " ", coords.sizes());
  TORCH_CHECK(sparse_shape.size() == 3 && window.size() == 3 && shift.size() == 3,
              "sparse3d.set_partition: sparse_shape, window and shift need 3 entries each, got ",
              sparse_shape, ", ", window, ", ", shift);
  TORCH_CHECK(set_size > 0, "sparse3d.set_partition: set_size must be positive, got ",
              set_size);
  WindowGeom g{};
  for (int d = 0; d < 3; ++d) {
    TORCH_CHECK(sparse_shape[d] > 0 && window[d] > 0 && shift[d] >= 0 && shift[d] < window[d],
                "sparse3d.set_partition: need sparse_shape > 0, window > 0 and "
                "0 <= shift < window on every axis, got sparse_shape ",
                sparse_shape, ", window ", window, ", shift ", shift);
    g.shape[d] = sparse_shape[d];
    g.window[d] = window[d];
    g.shift[d] = shift[d];
    g.n_win[d] = (sparse_shape[d] + window[d] - 1) / window[d] + 1;
  }
  return g;
}

// Inputs and outputs of the window-key kernel.
struct WindowKeysCall {
  WindowGeom g;
  at::Tensor coords;  // int32 [N, 4], contiguous
  int64_t N, S;       // voxels, set size
  at::Tensor in_win;  // int32 [N, 3]: in-window coordinates
  at::Tensor keys;    // int64 [2, N]: window-major sort keys (row 0 y-major, row 1 x-major)
};

inline WindowKeysCall prepare_window_keys(const at::Tensor& coords, c10::IntArrayRef sparse_shape,
                                          c10::IntArrayRef window, c10::IntArrayRef shift,
                                          int64_t set_size) {
  const WindowGeom g = make_window_geom(coords, sparse_shape, window, shift, set_size);
  at::Tensor c = coords.contiguous();
  const int64_t N = c.size(0);
  at::Tensor in_win = at::empty({N, 3}, c.options());
  at::Tensor keys = at::empty({2, N}, c.options().dtype(at::kLong));
  return {g, c, N, set_size, in_win, keys};
}

// Inputs and outputs of the set-fill kernel: the window runs of the voxels sorted by key,
// for W non-empty windows and M sets in all.
struct FillSetsCall {
  at::Tensor order;          // int64 [2, N], contiguous: voxel rows sorted by key, per ordering
  at::Tensor win_begin;      // int64 [W]: first sorted row of each window
  at::Tensor win_count;      // int64 [W]: voxels of each window
  at::Tensor win_set_begin;  // int64 [W]: first set of each window
  at::Tensor set_window;     // int64 [M]: window of each set
  int64_t M;
  at::Tensor inds;        // int64 [2, M, S]
  at::Tensor mask;        // bool [2, M, S]
  at::Tensor first_slot;  // int64 [2, N]
};

// Sorts call.keys (filled by the window-key kernel) stably per ordering; both orderings
// sort by window first, so row 0 alone gives the window runs.
inline FillSetsCall prepare_fill_sets(const WindowKeysCall& call) {
  auto [sorted, order] = call.keys.sort(true, 1, false);
  const int64_t S = call.S;
  const at::Tensor win_ids = sorted[0].div(window_volume(call.g), "floor");
  const at::Tensor counts = std::get<2>(at::unique_consecutive(win_ids, false, true));
  const at::Tensor n_sets = counts.add(S - 1).div(S, "floor");
  const at::Tensor win_begin = counts.cumsum(0).sub(counts);
  const at::Tensor win_set_begin = n_sets.cumsum(0).sub(n_sets);
  const at::Tensor set_window =
      at::repeat_interleave(at::arange(counts.size(0), counts.options()), n_sets);
  const int64_t M = set_window.size(0);
  at::Tensor inds = at::empty({2, M, S}, call.keys.options());
  at::Tensor mask = at::empty({2, M, S}, call.keys.options().dtype(at::kBool));
  // Every voxel lies in some window, and fill_set writes each voxel's first slot once.
  at::Tensor first_slot = at::empty({2, call.N}, call.keys.options());
  return {order.contiguous(), win_begin, counts, win_set_begin, set_window, M, inds, mask,
          first_slot};
}

}  // namespace sparse3d
