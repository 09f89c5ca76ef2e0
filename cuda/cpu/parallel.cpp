// The thread pool behind sparse3d::parallel_for (see parallel.h for why it exists).
#include "parallel.h"

#include <c10/util/ParallelGuard.h>
#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

namespace sparse3d {
namespace detail {
namespace {

// How long an idle thread keeps checking for work before it sleeps: waking a sleeping
// thread costs tens of microseconds (more in a VM, whose idle virtual CPU must be
// scheduled again), a price every call would pay when calls come closer than that. While
// it checks, the thread yields its core to any other runnable thread, so the wait takes
// no time from threads that have work (ours, or another process's).
constexpr auto kSpin = std::chrono::milliseconds(2);

thread_local bool tl_in_pieces = false;

// One call's pieces, cut into one contiguous share per thread. Each thread works through
// its own share first (as a static split would: neighbouring pieces share cache lines and
// pages), then takes what is left of the others'; a thread that never runs leaves its
// share to the rest. Shared (shared_ptr) with the pool threads that look at it, so that a
// thread that wakes after the call returned finds a finished job instead of freed memory;
// `piece` is only called for a piece taken before all were done, so it is still alive.
struct Job {
  c10::function_ref<void(int64_t)> piece;
  int64_t pieces;
  int threads;                                   // shares; pool threads allowed to join: threads - 1
  std::unique_ptr<std::atomic<int64_t>[]> next;  // next piece of each share
  std::atomic<int64_t> finished{0};              // pieces done
  std::atomic<int> joined{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex mutex;                              // for `done` only
  std::condition_variable done;

  Job(c10::function_ref<void(int64_t)> f, int64_t n, int t)
      : piece(f), pieces(n), threads(t), next(new std::atomic<int64_t>[t]) {
    for (int s = 0; s < t; ++s) next[s].store(share_begin(s), std::memory_order_relaxed);
  }

  int64_t share_begin(int s) const { return pieces * s / threads; }

  // Runs the pieces of share `own`, then of the shares after it, until none is left.
  void work(int own) {
    for (int i = 0; i < threads; ++i) {
      const int s = (own + i) % threads;
      const int64_t end = share_begin(s + 1);
      for (int64_t p = next[s].fetch_add(1, std::memory_order_relaxed); p < end;
           p = next[s].fetch_add(1, std::memory_order_relaxed))
        run(p);
    }
  }

  void run(int64_t p) {
    try {
      piece(p);
    } catch (...) {
      if (!failed.exchange(true)) error = std::current_exception();
    }
    if (finished.fetch_add(1, std::memory_order_acq_rel) + 1 == pieces) {
      std::lock_guard<std::mutex> lock(mutex);
      done.notify_one();
    }
  }

  bool complete() const { return finished.load(std::memory_order_acquire) == pieces; }
};

class Pool {
 public:
  void run(int64_t pieces, int threads, c10::function_ref<void(int64_t)> piece) {
    auto job = std::make_shared<Job>(piece, pieces, threads);
    grow(threads - 1);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = job;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    {
      c10::ParallelGuard guard(true);
      tl_in_pieces = true;
      job->work(0);
      tl_in_pieces = false;
    }
    // Only pieces that a pool thread took and has not finished are left: wait for them.
    const auto until = std::chrono::steady_clock::now() + kSpin;
    while (!job->complete() && std::chrono::steady_clock::now() < until) sched_yield();
    if (!job->complete()) {
      std::unique_lock<std::mutex> lock(job->mutex);
      job->done.wait(lock, [&] { return job->complete(); });
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (job_ == job) job_.reset();
    }
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  void grow(int workers) {
    std::lock_guard<std::mutex> lock(mutex_);
    while ((int)threads_ < workers) {
      std::thread(&Pool::loop, this).detach();  // the pool lives as long as the process
      ++threads_;
    }
  }

  void loop() {
    c10::ParallelGuard guard(true);  // torch ops called inside a piece run serially
    tl_in_pieces = true;
    uint64_t seen = generation_.load(std::memory_order_acquire);
    for (;;) {
      const auto until = std::chrono::steady_clock::now() + kSpin;
      while (generation_.load(std::memory_order_acquire) == seen &&
             std::chrono::steady_clock::now() < until)
        sched_yield();
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_.load(std::memory_order_relaxed) != seen; });
        seen = generation_.load(std::memory_order_relaxed);
        job = job_;
      }
      if (job == nullptr) continue;
      const int share = 1 + job->joined.fetch_add(1, std::memory_order_relaxed);
      if (share < job->threads) job->work(share);
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::shared_ptr<Job> job_;
  size_t threads_ = 0;
};

// One pool per process: a child of fork() has none of its parent's threads (nor a usable
// copy of a mutex that one of them held), so it builds its own.
Pool& pool() {
  static std::mutex mutex;
  static Pool* instance = nullptr;
  static pid_t owner = 0;
  std::lock_guard<std::mutex> lock(mutex);
  if (instance == nullptr || owner != getpid()) {
    instance = new Pool();  // never destroyed: its threads are detached
    owner = getpid();
  }
  return *instance;
}

}  // namespace

void run_pieces(int64_t pieces, c10::function_ref<void(int64_t)> piece) {
  const int threads = (int)std::min<int64_t>(at::get_num_threads(), pieces);
  if (threads <= 1 || tl_in_pieces || at::in_parallel_region()) {
    for (int64_t p = 0; p < pieces; ++p) piece(p);
    return;
  }
  pool().run(pieces, threads, piece);
}

}  // namespace detail
}  // namespace sparse3d
