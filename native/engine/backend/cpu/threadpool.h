// threadpool.h - a persistent pool of worker threads for data-parallel loops.
//
// Decode runs a few hundred small parallel loops per token, so waking threads
// must be cheap: workers spin briefly on a generation counter before sleeping on
// a condition variable. An empty parallel_for (wake-up plus barrier) costs about
// 0.2 us on 2 threads (measured by native/tools/cxr-roofline.cpp), some 0.1 ms of
// a 7B decode step's ~150 ms. Work inside a loop is handed out in chunks from an
// atomic counter, which balances uneven rows without a scheduler; chunks are
// either of one size or shrink as the loop nears its end.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace cxr {

class ThreadPool {
 public:
  // n_threads counts the calling thread: 1 means "run inline, no workers".
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(begin, end, thread_index) over [0, n) in chunks of `grain` items,
  // on all threads, and returns when every chunk is done. Not re-entrant: fn
  // must not call parallel_for on the same pool.
  void parallel_for(int64_t n, int64_t grain,
                    const std::function<void(int64_t, int64_t, int)>& fn);

  // Like parallel_for, but each fetch takes a share of what is left (half of
  // an even split between threads), never under min_grain. Early chunks are
  // long, so each thread streams through memory in few sequential runs; late
  // ones are short, so threads finish within a few rows of each other.
  void parallel_for_shrinking(int64_t n, int64_t min_grain,
                              const std::function<void(int64_t, int64_t, int)>& fn);

  // Default thread count: the number of physical-ish cores (hardware threads,
  // halved when SMT is likely), at least 1.
  static int default_threads();

 private:
  void worker(int index);
  void run_chunks(int thread_index);
  void run(int64_t n, int64_t grain, bool shrinking, const std::function<void(int64_t, int64_t, int)>& fn);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};   // workers still inside the current job
  std::atomic<int64_t> next_{0};  // next unclaimed item
  std::atomic<bool> stop_{false};
  int64_t n_ = 0, grain_ = 1;
  bool shrinking_ = false;
  const std::function<void(int64_t, int64_t, int)>* fn_ = nullptr;
};

}  // namespace cxr
