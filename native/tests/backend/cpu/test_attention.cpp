// test_attention.cpp - the CPU attention kernel against a plain double-precision
// softmax(q kᵀ · scale) v computed here, row by row, with the whole score row in
// memory. Shapes cover prompts and single-token decoding, causal and not, grouped
// KV heads, F32 and F16 caches, lengths that are not multiples of any tile or
// vector width, and a query block that starts past position 0. Every case runs
// on the SIMD kernels (where the CPU has them) and on the forced scalar path.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/cpu_kernels.h"
#include "types/quants.h"
#include "support/test.h"
#include "backend/cpu/threadpool.h"

using namespace cxr;

namespace {

struct Case {
  int64_t n, n_kv, pos0;
  int n_heads, n_kv_heads, head_dim;
  bool causal;
  DType kv_type;
  float q_gain = 1.0f;  // larger: sharper softmax
  bool ramp = false;    // later keys score higher, so the running max moves every tile
};

// Worst |ours - reference| over the output, relative to max |v|.
double run_case(const Case& c, int threads, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t qw = static_cast<int64_t>(c.n_heads) * c.head_dim;
  const int64_t kw = static_cast<int64_t>(c.n_kv_heads) * c.head_dim;
  std::vector<float> q(c.n * qw), k(c.n_kv * kw), v(c.n_kv * kw);
  for (auto& x : q) x = nd(rng) * c.q_gain;
  for (auto& x : k) x = nd(rng);
  for (auto& x : v) x = nd(rng);
  if (c.ramp)
    for (int64_t j = 0; j < c.n_kv; ++j)
      for (int64_t d = 0; d < kw; ++d) k[j * kw + d] = k[j * kw + d] * 0.1f + 0.02f * j * (d % 2 ? 1.0f : 0.5f);
  // The cache as the kernel sees it, and the values the reference uses (F16-rounded for an F16 cache).
  std::vector<uint16_t> kh, vh;
  if (c.kv_type == DType::F16) {
    kh.resize(k.size());
    vh.resize(v.size());
    for (size_t i = 0; i < k.size(); ++i) k[i] = fp16_to_fp32(kh[i] = fp32_to_fp16(k[i]));
    for (size_t i = 0; i < v.size(); ++i) v[i] = fp16_to_fp32(vh[i] = fp32_to_fp16(v[i]));
  }
  std::vector<float> out(c.n * qw, NAN);
  AttentionArgs a;
  a.q = q.data();
  a.k = c.kv_type == DType::F16 ? static_cast<const void*>(kh.data()) : k.data();
  a.v = c.kv_type == DType::F16 ? static_cast<const void*>(vh.data()) : v.data();
  a.kv_type = c.kv_type;
  a.out = out.data();
  a.n = c.n;
  a.n_kv = c.n_kv;
  a.pos0 = c.pos0;
  a.n_heads = c.n_heads;
  a.n_kv_heads = c.n_kv_heads;
  a.head_dim = c.head_dim;
  a.causal = c.causal;
  a.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  ThreadPool pool(threads);
  cpu_attention(pool, a);

  double vmax = 0, worst = 0;
  for (float x : v) vmax = std::max(vmax, static_cast<double>(std::fabs(x)));
  const int group = c.n_heads / c.n_kv_heads;
  for (int64_t i = 0; i < c.n; ++i)
    for (int h = 0; h < c.n_heads; ++h) {
      const int kvh = h / group;
      const int64_t visible = c.causal ? c.pos0 + i + 1 : c.n_kv;
      std::vector<double> s(visible);
      double mx = -INFINITY;
      for (int64_t j = 0; j < visible; ++j) {
        double d = 0;
        for (int t = 0; t < c.head_dim; ++t)
          d += static_cast<double>(q[i * qw + h * c.head_dim + t]) * k[j * kw + kvh * c.head_dim + t];
        s[j] = d * a.scale;
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      for (auto& x : s) sum += (x = std::exp(x - mx));
      for (int t = 0; t < c.head_dim; ++t) {
        double o = 0;
        for (int64_t j = 0; j < visible; ++j) o += s[j] * v[j * kw + kvh * c.head_dim + t];
        o /= sum;
        const double got = out[i * qw + h * c.head_dim + t];
        worst = std::max(worst, std::isfinite(got) ? std::fabs(got - o) : INFINITY);
      }
    }
  return worst / vmax;
}

// Float accumulation over a few hundred keys of unit-scale values: errors stay
// near 1e-6; a missed rescale, mask or tile edge gives errors of order 0.1-1.
constexpr double kMaxRelError = 2e-5;

void check_both_paths(const Case& c, int threads = 2) {
  for (bool scalar : {false, true}) {
    force_scalar_kernels(scalar);
    const double err = run_case(c, threads, 1234u + static_cast<uint32_t>(c.n * 7 + c.n_kv));
    if (!(err <= kMaxRelError))
      std::fprintf(stderr, "  case n=%lld n_kv=%lld pos0=%lld heads=%d/%d hd=%d causal=%d %s %s: error %g\n",
                   static_cast<long long>(c.n), static_cast<long long>(c.n_kv), static_cast<long long>(c.pos0),
                   c.n_heads, c.n_kv_heads, c.head_dim, c.causal, dtype_name(c.kv_type),
                   scalar ? "scalar" : simd_level(), err);
    CHECK(err <= kMaxRelError);
  }
  force_scalar_kernels(false);
}

}  // namespace

TEST(attention_prefill_causal_matches_reference) {
  // One row block and several, key counts below, at and across the tile size.
  check_both_paths({1, 1, 0, 4, 4, 64, true, DType::F32});
  check_both_paths({37, 37, 0, 4, 4, 64, true, DType::F32});
  check_both_paths({130, 130, 0, 2, 2, 128, true, DType::F16, 3.0f});
}

TEST(attention_non_causal_matches_reference) {
  // The vision tower: every token sees every token (odd length like 1025).
  check_both_paths({67, 67, 0, 3, 3, 64, false, DType::F32, 2.0f});
  check_both_paths({33, 129, 0, 2, 2, 32, false, DType::F16});
}

TEST(attention_grouped_kv_heads) {
  check_both_paths({45, 45, 0, 8, 2, 32, true, DType::F32});
  check_both_paths({1, 90, 89, 8, 2, 32, true, DType::F16, 2.0f});  // decode: the group is one block
  check_both_paths({19, 19, 0, 6, 1, 16, false, DType::F16});
}

TEST(attention_continues_a_cache) {
  // A chunk of a prompt or a decode step past position 0: row i sees keys 0..pos0+i.
  check_both_paths({5, 75, 70, 4, 4, 64, true, DType::F16});
  check_both_paths({40, 300, 260, 2, 2, 128, true, DType::F32, 2.0f});
  check_both_paths({1, 200, 199, 4, 4, 128, true, DType::F16});
}

TEST(attention_decode_tiles_and_shares) {
  // One query row: key counts below, at and across the 8-key decode tile and
  // the per-thread shares, both cache types, a head size with a remainder
  // past the 32-float output block (40), and a grouped, non-causal case.
  for (int64_t n_kv : {1, 7, 8, 9, 61, 517}) {
    check_both_paths({1, n_kv, n_kv - 1, 4, 4, 64, true, DType::F16, 2.0f});
    check_both_paths({1, n_kv, n_kv - 1, 2, 2, 40, true, DType::F32});
  }
  check_both_paths({1, 100, 0, 6, 2, 32, false, DType::F16});
  // Rising scores: every tile raises the running maximum.
  check_both_paths({1, 300, 299, 2, 2, 64, true, DType::F16, 4.0f, true});
}

TEST(attention_running_max_moves_every_tile) {
  // Scores grow along the keys, so each tile raises the maximum and the sums
  // gathered so far must be rescaled correctly.
  Case c{50, 250, 200, 2, 2, 64, true, DType::F32, 4.0f, true};
  check_both_paths(c);
  c.kv_type = DType::F16;
  check_both_paths(c);
}

TEST(attention_odd_head_dims) {
  // Head sizes off the 16-float tile (40) and off the 8-float vector (6, scalar only).
  check_both_paths({21, 21, 0, 2, 2, 40, true, DType::F32});
  check_both_paths({21, 70, 49, 2, 1, 6, true, DType::F16});
}

TEST(attention_thread_counts_agree) {
  for (int threads : {1, 3}) {
    const double err = run_case({70, 70, 0, 4, 2, 64, true, DType::F16}, threads, 99);
    CHECK(err <= kMaxRelError);
  }
}
