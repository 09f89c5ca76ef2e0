// Dynamic work sharing on top of at::parallel_for.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace sparse3d {

// at::parallel_for gives each thread one contiguous share of [0, n). When the cost per item
// varies (kernel-map rows differ in occupancy), or another process holds one of the cores,
// one thread idles while another finishes its share; here each thread's `worker(take)`
// instead pulls ranges of `grain` items until `take(r0, r1)` returns false. (With one of
// the two cores busy elsewhere, a 32-channel SubMConv3d ran 1.5x faster this way in an
// ad-hoc A/B run; tools/bench_sparse_conv.py measures a quiet machine.) Only for work
// whose result does not depend on which thread runs which range (e.g. each output row
// written by whoever takes it, in a fixed order).
template <typename Worker>
void parallel_for_dynamic(int64_t n, int64_t grain, const Worker& worker) {
  const int64_t pieces = (n + grain - 1) / grain;
  if (pieces == 0) return;
  std::atomic<int64_t> next{0};
  auto take = [&](int64_t& r0, int64_t& r1) {
    const int64_t piece = next.fetch_add(1, std::memory_order_relaxed);
    if (piece >= pieces) return false;
    r0 = piece * grain;
    r1 = std::min(n, r0 + grain);
    return true;
  };
  // One call per thread: each call runs one worker (all of it when already in a parallel region).
  at::parallel_for(0, std::min<int64_t>(at::get_num_threads(), pieces), 1,
                   [&](int64_t, int64_t) { worker(take); });
}

}  // namespace sparse3d
