// CPU kernel of the DSVT set partition: window keys per voxel in parallel, one stable sort
// per ordering, then one task per set. Every output element has exactly one writer, so the
// result does not depend on the thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "sparse3d/partition.h"

namespace sparse3d {

WindowGeom make_window_geom(const at::Tensor& coords, c10::IntArrayRef sparse_shape,
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

// Window runs of the voxels sorted by key (device-agnostic ATen, shared with the CUDA glue):
// first sorted row, voxel count and first set of every non-empty window, and the window
// of every set. sorted_keys: int64 [N] ascending, window id = key / volume.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> window_runs(
    const at::Tensor& sorted_keys, int64_t volume, int64_t set_size) {
  const at::Tensor win_ids = sorted_keys.div(volume, "floor");
  const at::Tensor counts = std::get<2>(at::unique_consecutive(win_ids, false, true));
  const at::Tensor n_sets = counts.add(set_size - 1).div(set_size, "floor");
  const at::Tensor win_begin = counts.cumsum(0).sub(counts);
  const at::Tensor win_set_begin = n_sets.cumsum(0).sub(n_sets);
  const at::Tensor set_window = at::repeat_interleave(
      at::arange(counts.size(0), counts.options()), n_sets);
  return {win_begin, counts, win_set_begin, set_window};
}

namespace {

constexpr int64_t kGrain = 2048;
constexpr int64_t kSetGrain = 16;

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> set_partition_cpu(
    const at::Tensor& coords_in, c10::IntArrayRef sparse_shape, c10::IntArrayRef window,
    c10::IntArrayRef shift, int64_t set_size) {
  const WindowGeom g = make_window_geom(coords_in, sparse_shape, window, shift, set_size);
  const at::Tensor coords = coords_in.contiguous();
  const int64_t N = coords.size(0), S = set_size;
  at::Tensor in_win = at::empty({N, 3}, coords.options());
  at::Tensor keys = at::empty({2, N}, coords.options().dtype(at::kLong));
  const int32_t* c = coords.data_ptr<int32_t>();
  int32_t* iw = in_win.data_ptr<int32_t>();
  int64_t* k = keys.data_ptr<int64_t>();
  at::parallel_for(0, N, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) voxel_window_keys(c + 4 * i, g, iw + 3 * i, k + i, k + N + i);
  });
  auto [sorted, order] = keys.sort(true, 1, false);
  order = order.contiguous();
  auto [win_begin, win_count, win_set_begin, set_window] =
      window_runs(sorted[0], window_volume(g), S);
  const int64_t M = set_window.size(0);
  at::Tensor inds = at::empty({2, M, S}, keys.options());
  at::Tensor mask = at::empty({2, M, S}, keys.options().dtype(at::kBool));
  // Every voxel lies in some window, and fill_set writes each voxel's first slot once.
  at::Tensor first_slot = at::empty({2, N}, keys.options());
  const int64_t* ord = order.data_ptr<int64_t>();
  const int64_t *wb = win_begin.data_ptr<int64_t>(), *wc = win_count.data_ptr<int64_t>(),
                *ws = win_set_begin.data_ptr<int64_t>(), *sw = set_window.data_ptr<int64_t>();
  int64_t* in = inds.data_ptr<int64_t>();
  bool* mk = mask.data_ptr<bool>();
  int64_t* fs = first_slot.data_ptr<int64_t>();
  at::parallel_for(0, 2 * M, kSetGrain, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t o = s / M, set = s % M, w = sw[set], n = wc[w];
      fill_set(ord + o * N + wb[w], n, (n + S - 1) / S, set - ws[w], S, set, in + s * S,
               mk + s * S, fs + o * N);
    }
  });
  return {inds, mask, first_slot, in_win};
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CPU, m) { m.impl("set_partition", &set_partition_cpu); }

}  // namespace sparse3d
