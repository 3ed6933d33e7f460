// cxr-roofline - this machine's ceilings, measured the way our kernels meet them:
// memory read bandwidth (every thread streams its own part of a buffer much
// larger than the caches; on huge pages, as the engine's weights are, and on
// 4 KiB pages) and peak FLOP/s (every thread runs independent FMA chains on
// registers); also what one parallel_for costs with no work in it. The
// benchmark reports decode as a fraction of the huge-page bandwidth and
// prefill / vision as a fraction of the FLOP/s.
//
//   cxr-roofline [--threads N] [--mb 1024] [--json]
//
// Prints medians of several runs; --json prints one JSON line instead.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/host_memory.h"
#include "backend/cpu/x86/simd_avx2.h"
#include "backend/cpu/threadpool.h"

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Sum of n floats with 4 independent accumulators: one pass, reads only.
float stream_sum_scalar(const float* p, int64_t n) {
  float a = 0, b = 0, c = 0, d = 0;
  for (int64_t i = 0; i + 4 <= n; i += 4) {
    a += p[i];
    b += p[i + 1];
    c += p[i + 2];
    d += p[i + 3];
  }
  return a + b + c + d;
}

// `iters` rounds of 2 x 8 independent multiply-adds on registers; returns a
// value that depends on all of them so nothing is optimised away.
float fma_loop_scalar(int64_t iters) {
  float acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = 1.0f + i * 1e-3f;
  const float m = 0.999999f, c = 1e-7f;
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 16; ++i) acc[i] = acc[i] * m + c;
  float s = 0;
  for (float x : acc) s += x;
  return s;
}

#if CXR_HAVE_AVX2_KERNELS
CXR_AVX2 float stream_sum_avx2(const float* p, int64_t n) {
  __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;
  for (int64_t i = 0; i + 32 <= n; i += 32) {
    a = _mm256_add_ps(a, _mm256_load_ps(p + i));
    b = _mm256_add_ps(b, _mm256_load_ps(p + i + 8));
    c = _mm256_add_ps(c, _mm256_load_ps(p + i + 16));
    d = _mm256_add_ps(d, _mm256_load_ps(p + i + 24));
  }
  return cxr::avx2::hsum(_mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));
}

// 12 independent chains: enough to cover the FMA latency on two pipes.
CXR_AVX2 float fma_loop_avx2(int64_t iters) {
  __m256 acc[12];
  CXR_UNROLL for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(1.0f + i * 1e-3f);
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
    CXR_UNROLL for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], m, c);
  }
  __m256 s = acc[0];
  CXR_UNROLL for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
  return cxr::avx2::hsum(s);
}
#endif

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, mb = 1024, runs = 5;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--mb") && i + 1 < argc) mb = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--runs") && i + 1 < argc) runs = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--json")) json = true;
    else {
      std::fprintf(stderr, "usage: cxr-roofline [--threads N] [--mb MB] [--runs N] [--json]\n");
      return 2;
    }
  }
  if (threads < 1 || mb < 1 || runs < 1) return 2;
  // As the engine decides: AVX2 where the CPU has it, unless CXR_FORCE_SCALAR=1.
  const bool simd = CXR_HAVE_AVX2_KERNELS && cxr::cpu_features().avx2_level() && !cxr::scalar_forced_by_env();
  cxr::ThreadPool pool(threads);

  // Read bandwidth: a buffer far past the last-level cache, touched once first
  // so page faults are not measured. Twice: on huge pages (alloc_host), as the
  // engine's weights and KV cache are where the OS grants them, and on 4 KiB
  // pages, what a plain allocation or mapping gets.
  const int64_t n = static_cast<int64_t>(mb) * (1 << 20) / 4;
  std::atomic<float> sink{0};
  auto read_bandwidth = [&](bool huge) {
    float* buf = static_cast<float*>(huge ? cxr::alloc_host(n * 4) : std::aligned_alloc(64, n * 4));
    if (!buf) std::exit(1);
#if defined(__linux__) && defined(MADV_NOHUGEPAGE)
    if (!huge) madvise(buf, n * 4 / 4096 * 4096, MADV_NOHUGEPAGE);
#endif
    pool.parallel_for(n, 1 << 16, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) buf[i] = 1e-6f * static_cast<float>(i & 1023);
    });
    std::vector<double> gbs;
    for (int r = 0; r < runs + 1; ++r) {
      const auto t0 = Clock::now();
      // One contiguous slice per thread, as a matmul's rows are shared out.
      pool.parallel_for(threads, 1, [&](int64_t b, int64_t, int) {
        const int64_t per = n / threads / 32 * 32;
        const float* p = buf + b * per;
        const float s = simd ? 0.0f : stream_sum_scalar(p, per);
#if CXR_HAVE_AVX2_KERNELS
        const float v = simd ? stream_sum_avx2(p, per) : s;
#else
        const float v = s;
#endif
        sink.store(v, std::memory_order_relaxed);
      });
      const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
      if (r > 0) gbs.push_back(static_cast<double>(n / threads / 32 * 32 * threads) * 4 / sec / 1e9);
    }
    if (huge) cxr::free_host(buf);
    else std::free(buf);
    return median(gbs);
  };
  const double bw = read_bandwidth(true);
  const double bw_small = read_bandwidth(false);

  // Peak FLOP/s: 2 flops per lane per FMA.
  const int64_t iters = 20'000'000;
  std::vector<double> gflops;
  for (int r = 0; r < runs + 1; ++r) {
    const auto t0 = Clock::now();
    pool.parallel_for(threads, 1, [&](int64_t, int64_t, int) {
#if CXR_HAVE_AVX2_KERNELS
      sink.store(simd ? fma_loop_avx2(iters) : fma_loop_scalar(iters / 4), std::memory_order_relaxed);
#else
      sink.store(fma_loop_scalar(iters / 4), std::memory_order_relaxed);
#endif
    });
    const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
    const double flops = simd ? 2.0 * 8 * 12 * iters : 2.0 * 16 * (iters / 4);
    if (r > 0) gflops.push_back(flops * threads / sec / 1e9);
  }
  // Thread-pool overhead: an empty parallel loop with one chunk per thread, the
  // wake-up and the barrier a decode step pays a few hundred times per token.
  std::vector<double> barrier_us;
  std::atomic<int64_t> touched{0};
  for (int r = 0; r < runs; ++r) {
    const int calls = 20000;
    const auto t0 = Clock::now();
    for (int c = 0; c < calls; ++c)
      pool.parallel_for(threads, 1, [&](int64_t b, int64_t e, int) { touched.fetch_add(e - b, std::memory_order_relaxed); });
    barrier_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / calls);
  }
  const double peak = median(gflops), sync = median(barrier_us);
  if (json) {
    std::printf(
        "{\"threads\":%d,\"simd\":\"%s\",\"read_gb_s\":%.2f,\"read_small_pages_gb_s\":%.2f,"
        "\"peak_gflop_s\":%.2f,\"parallel_for_us\":%.3f,\"buffer_mb\":%d}\n",
        threads, simd ? "avx2" : "scalar", bw, bw_small, peak, sync, mb);
  } else {
    std::printf("threads %d, %s kernels\n", threads, simd ? "avx2" : "scalar");
    std::printf("read bandwidth: %.2f GB/s on huge pages, %.2f GB/s on 4 KiB pages (medians of %d passes over %d MB)\n",
                bw, bw_small, runs, mb);
    std::printf("peak FLOP/s:    %.2f GFLOP/s (median of %d FMA runs)\n", peak, runs);
    std::printf("parallel_for:   %.3f us per empty loop (wake + barrier)\n", sync);
  }
  return sink.load() == 12345.0f ? 1 : 0;
}
