// The one way the CPU kernels run in parallel: pieces handed out to a thread pool that
// never waits for a thread that took no piece.
//
// at::parallel_for (OpenMP) gives each of the T threads one contiguous share of the range
// and ends every call with a barrier that all T threads must reach. While another process
// holds a core, one of our threads is descheduled for whole scheduler slices (several ms):
// its share, and then the barrier, wait for it, on every call. Beside one busy process
// (tools/bench_sparse_conv.py --background-load 1) a submanifold kernel map of a few such
// calls took 85 ms at 2 threads instead of 10 ms, more than at 1 thread.
// Here a call is cut into pieces of `grain` items; the calling thread and the pool's
// threads take pieces (their own contiguous share first, then the others'), so a thread
// that is not running takes none, and the call returns when every piece is done, whoever
// ran it: the same kernel map then took 16 ms. Idle pool threads check for work while
// yielding their core, then sleep (parallel.cpp).
//
// Results must not depend on which thread runs which piece (each piece writes its own
// outputs, or per-piece partials combined in piece order): pieces are fixed by `grain`,
// so such results do not depend on the thread count either.
#pragma once

#include <ATen/Parallel.h>
#include <c10/util/FunctionRef.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace sparse3d {

namespace detail {
// Runs piece(p) once for every p in [0, pieces), on the calling thread and on up to
// at::get_num_threads() - 1 pool threads; rethrows the first exception a piece threw.
void run_pieces(int64_t pieces, c10::function_ref<void(int64_t)> piece);
}  // namespace detail

// f(b, e) on disjoint ranges [b, e) of at most `grain` items covering [begin, end), like
// at::parallel_for; one call f(begin, end) when the range is at most `grain`, at one
// thread, or nested.
template <typename F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  if (begin >= end) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t pieces = (end - begin + grain - 1) / grain;
  if (pieces == 1) {
    f(begin, end);
    return;
  }
  detail::run_pieces(pieces, [&](int64_t p) {
    const int64_t b = begin + p * grain;
    f(b, std::min(end, b + grain));
  });
}

// For workers with per-thread scratch: each call of `worker(take)` (at most one per
// thread that joins) pulls ranges of `grain` items of [0, n) with `take(r0, r1)` until it
// returns false.
template <typename Worker>
void parallel_for_dynamic(int64_t n, int64_t grain, const Worker& worker) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t pieces = (n + grain - 1) / grain;
  std::atomic<int64_t> next{0};
  auto take = [&](int64_t& r0, int64_t& r1) {
    const int64_t piece = next.fetch_add(1, std::memory_order_relaxed);
    if (piece >= pieces) return false;
    r0 = piece * grain;
    r1 = std::min(n, r0 + grain);
    return true;
  };
  // One piece per thread: a worker that starts after all ranges are taken returns at once.
  detail::run_pieces(std::min<int64_t>(pieces, at::get_num_threads()), [&](int64_t) {
    if (next.load(std::memory_order_relaxed) < pieces) worker(take);
  });
}

}  // namespace sparse3d
