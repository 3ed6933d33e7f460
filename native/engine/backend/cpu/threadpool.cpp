// threadpool.cpp - see threadpool.h.
#include "backend/cpu/threadpool.h"

#include <algorithm>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
static inline void cpu_relax() { _mm_pause(); }
#elif defined(__aarch64__)
static inline void cpu_relax() { asm volatile("yield"); }
#else
static inline void cpu_relax() {}
#endif

namespace cxr {

// How long a worker spins on the generation counter before sleeping. Long
// enough to bridge the gap between consecutive matmuls of one token, short
// enough not to burn a core when the model is idle.
static constexpr int kSpinIterations = 20000;

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back(&ThreadPool::worker, this, i);
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

int ThreadPool::default_threads() {
  unsigned hw = std::thread::hardware_concurrency();
  if (hw == 0) return 1;
  // Hyper-threads share one core's SIMD units; more threads than cores only
  // adds contention for matmul-bound work. Small machines keep every thread.
  return hw >= 8 ? static_cast<int>(hw / 2) : static_cast<int>(hw);
}

void ThreadPool::run_chunks(int thread_index) {
  if (shrinking_) {
    const int64_t parts = 2 * static_cast<int64_t>(n_threads_);
    int64_t begin = next_.load(std::memory_order_relaxed);
    for (;;) {
      if (begin >= n_) break;
      const int64_t take = std::max(grain_, (n_ - begin) / parts);
      // On failure compare_exchange reloads `begin` and we size the fetch again.
      if (!next_.compare_exchange_weak(begin, begin + take, std::memory_order_relaxed)) continue;
      (*fn_)(begin, std::min(n_, begin + take), thread_index);
      begin = next_.load(std::memory_order_relaxed);
    }
    return;
  }
  for (;;) {
    int64_t begin = next_.fetch_add(grain_, std::memory_order_relaxed);
    if (begin >= n_) break;
    (*fn_)(begin, std::min(n_, begin + grain_), thread_index);
  }
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    // Spin first: the next job usually arrives within microseconds.
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && spins < kSpinIterations) {
      cpu_relax();
      ++spins;
    }
    if (generation_.load(std::memory_order_acquire) == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return generation_.load() != seen; });
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    run_chunks(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t, int)>& fn) {
  run(n, grain, false, fn);
}

void ThreadPool::parallel_for_shrinking(int64_t n, int64_t min_grain,
                                        const std::function<void(int64_t, int64_t, int)>& fn) {
  run(n, min_grain, true, fn);
}

void ThreadPool::run(int64_t n, int64_t grain, bool shrinking,
                     const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (n_threads_ == 1 || n <= grain) {
    fn(0, n, 0);
    return;
  }
  n_ = n;
  grain_ = grain;
  shrinking_ = shrinking;
  fn_ = &fn;
  next_.store(0, std::memory_order_relaxed);
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
  run_chunks(0);
  while (pending_.load(std::memory_order_acquire) != 0) cpu_relax();
  fn_ = nullptr;
}

}  // namespace cxr
