// CPU kernel of the DSVT set partition: window keys per voxel in parallel, one stable sort
// per ordering (../glue/partition_args.h), then one task per set. Every output element has
// exactly one writer, so the result does not depend on the thread count.
#include <torch/library.h>

#include "../glue/partition_args.h"
#include "parallel.h"
#include "sparse3d/partition.h"

namespace sparse3d {
namespace {

constexpr int64_t kGrain = 2048;
constexpr int64_t kSetGrain = 16;

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> set_partition_cpu(
    const at::Tensor& coords, c10::IntArrayRef sparse_shape, c10::IntArrayRef window,
    c10::IntArrayRef shift, int64_t set_size) {
  const WindowKeysCall call = prepare_window_keys(coords, sparse_shape, window, shift, set_size);
  const WindowGeom& g = call.g;
  const int64_t N = call.N, S = call.S;
  const int32_t* c = call.coords.data_ptr<int32_t>();
  int32_t* iw = call.in_win.data_ptr<int32_t>();
  int64_t* k = call.keys.data_ptr<int64_t>();
  parallel_for(0, N, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) voxel_window_keys(c + 4 * i, g, iw + 3 * i, k + i, k + N + i);
  });
  const FillSetsCall sets = prepare_fill_sets(call);
  const int64_t M = sets.M;
  const int64_t* ord = sets.order.data_ptr<int64_t>();
  const int64_t *wb = sets.win_begin.data_ptr<int64_t>(), *wc = sets.win_count.data_ptr<int64_t>(),
                *ws = sets.win_set_begin.data_ptr<int64_t>(),
                *sw = sets.set_window.data_ptr<int64_t>();
  int64_t* in = sets.inds.data_ptr<int64_t>();
  bool* mk = sets.mask.data_ptr<bool>();
  int64_t* fs = sets.first_slot.data_ptr<int64_t>();
  parallel_for(0, 2 * M, kSetGrain, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t o = s / M, set = s % M, w = sw[set], n = wc[w];
      fill_set(ord + o * N + wb[w], n, (n + S - 1) / S, set - ws[w], S, set, in + s * S,
               mk + s * S, fs + o * N);
    }
  });
  return {sets.inds, sets.mask, sets.first_slot, call.in_win};
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CPU, m) { m.impl("set_partition", &set_partition_cpu); }

}  // namespace sparse3d
