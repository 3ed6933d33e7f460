// test_threadpool.cpp - both loop schedules cover every item exactly once, and
// the shrinking one hands out long fetches first and short ones last.
#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>

#include "support/test.h"
#include "backend/cpu/threadpool.h"

using cxr::ThreadPool;

namespace {

struct Chunk {
  int64_t begin, end;
};

// Runs one loop and returns its chunks sorted by begin, after checking that
// every item in [0, n) was visited exactly once.
std::vector<Chunk> run_loop(ThreadPool& pool, int64_t n, int64_t grain, bool shrinking) {
  std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
  std::mutex mu;
  std::vector<Chunk> chunks;
  auto fn = [&](int64_t b, int64_t e, int thread) {
    CHECK(thread >= 0 && thread < pool.size());
    CHECK(b < e);
    for (int64_t i = b; i < e; ++i) seen[static_cast<size_t>(i)].fetch_add(1);
    std::lock_guard<std::mutex> lock(mu);
    chunks.push_back({b, e});
  };
  if (shrinking) pool.parallel_for_shrinking(n, grain, fn);
  else pool.parallel_for(n, grain, fn);
  int64_t wrong = 0;
  for (auto& s : seen) wrong += s.load() != 1;
  CHECK(wrong == 0);
  std::sort(chunks.begin(), chunks.end(), [](const Chunk& a, const Chunk& b) { return a.begin < b.begin; });
  return chunks;
}

}  // namespace

TEST(threadpool_loops_visit_every_item_once) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 7, 32, 100, 4096, 11008}) {
      for (int64_t grain : {1, 16, 32, 5000}) {
        run_loop(pool, n, grain, false);
        run_loop(pool, n, grain, true);
      }
    }
  }
}

TEST(threadpool_shrinking_fetches_start_long_and_end_short) {
  ThreadPool pool(2);
  const int64_t n = 11008, min_grain = 32;
  const std::vector<Chunk> chunks = run_loop(pool, n, min_grain, true);
  // The first fetch is a quarter of the loop (half an even share of 2 threads)...
  CHECK(!chunks.empty() && chunks.front().end - chunks.front().begin == n / 4);
  // ...each one is at most a quarter of what was left where it starts, and at
  // least min_grain unless it ends the loop...
  for (size_t i = 0; i < chunks.size(); ++i) {
    const int64_t len = chunks[i].end - chunks[i].begin;
    CHECK(len <= std::max(min_grain, (n - chunks[i].begin) / 4));
    if (chunks[i].end != n) CHECK(len >= min_grain);
  }
  // ...so the loop ends in fetches of min_grain, and there are few of them
  // (a handful per halving of what is left, not n / min_grain).
  CHECK(chunks.back().end - chunks.back().begin <= min_grain);
  CHECK(chunks.size() < 80);
}
