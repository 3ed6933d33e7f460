// test_sampler.cpp - Rng against independent reference values, greedy and
// sampled choices, and the statistics of the sampling pipeline.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "types/error.h"
#include "text/sampler.h"
#include "support/test.h"

namespace {

using cxr::Rng;
using cxr::Sampler;
using cxr::SamplerParams;

// Draws `n` tokens from fixed logits (a fresh copy each time: sample() may modify them).
std::vector<int32_t> draws(Sampler& s, const std::vector<float>& logits, int n) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    std::vector<float> l = logits;
    out.push_back(s.sample(l.data(), static_cast<int32_t>(l.size()), {}));
  }
  return out;
}

// Some logits with a clear structure but no ties.
std::vector<float> test_logits(int n) {
  std::vector<float> l(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) l[i] = std::sin(1.7f * static_cast<float>(i)) * 3.0f;
  return l;
}

int argmax(const std::vector<float>& l) {
  int best = 0;
  for (int i = 1; i < static_cast<int>(l.size()); ++i)
    if (l[i] > l[best]) best = i;
  return best;
}

// Checks observed frequencies against probabilities: each within 5 standard
// errors of a binomial proportion (a false alarm is ~1e-6 per token).
void check_frequencies(const std::vector<int32_t>& got, const std::vector<double>& p) {
  std::vector<int> count(p.size(), 0);
  for (int32_t t : got) {
    CHECK(t >= 0 && t < static_cast<int32_t>(p.size()));
    if (t >= 0 && t < static_cast<int32_t>(p.size())) ++count[t];
  }
  const double n = static_cast<double>(got.size());
  for (size_t i = 0; i < p.size(); ++i) {
    const double se = std::sqrt(p[i] * (1 - p[i]) / n);
    CHECK_NEAR(count[i] / n, p[i], 5 * se + 1e-9);
    if (p[i] == 0) CHECK(count[i] == 0);
  }
}

}  // namespace

TEST(rng_matches_reference) {
  // From tools/reference/rng_reference.py (Python integers, written from the
  // published splitmix64 / xoshiro256** algorithms).
  const uint64_t u0[] = {0x99EC5F36CB75F2B4ull, 0xBF6E1F784956452Aull, 0x1A5F849D4933E6E0ull,
                         0x6AA594F1262D2D2Cull, 0xBBA5AD4A1F842E59ull, 0xFFEF8375D9EBCACAull};
  const double d0[] = {0.42221152382531557, 0.5356548662673611, 0.8555171516848772, 0.9188580127069649};
  const uint64_t u42[] = {0x15780B2E0C2EC716ull, 0x6104D9866D113A7Eull, 0xAE17533239E499A1ull,
                          0xECB8AD4703B360A1ull, 0xFDE6DC7FE2EC5E64ull, 0xC50DA53101795238ull};
  const double d42[] = {0.7192585778779156, 0.8500084439109727, 0.7613743810057634, 0.5833493097373993};
  Rng a(0), b(42);
  for (int i = 0; i < 6; ++i) {
    CHECK(a.next_u64() == u0[i]);
    CHECK(b.next_u64() == u42[i]);
  }
  for (int i = 0; i < 4; ++i) {
    CHECK(a.next_double() == d0[i]);
    CHECK(b.next_double() == d42[i]);
  }
}

TEST(rng_double_range) {
  Rng r(7);
  double lo = 1, hi = 0, sum = 0;
  for (int i = 0; i < 100000; ++i) {
    const double d = r.next_double();
    CHECK(d >= 0.0 && d < 1.0);
    lo = std::fmin(lo, d);
    hi = std::fmax(hi, d);
    sum += d;
  }
  CHECK(lo < 0.001 && hi > 0.999);
  CHECK_NEAR(sum / 100000, 0.5, 0.005);  // 5 standard errors (sd 0.289 / sqrt(1e5))
}

TEST(sampler_greedy_is_argmax_lowest_id_on_ties) {
  Sampler s(SamplerParams{});  // temperature 0
  std::vector<float> l = {1.0f, 5.0f, -2.0f, 5.0f, 4.9f};
  CHECK(s.sample(l.data(), 5, {}) == 1);
  std::vector<float> nan = {NAN, -1.0f, -0.5f};
  CHECK(s.sample(nan.data(), 3, {}) == 2);  // NaN never wins
  const std::vector<float> t = test_logits(300);
  std::vector<float> c = t;
  CHECK(s.sample(c.data(), 300, {}) == argmax(t));
}

TEST(sampler_seed_determines_sequence) {
  const std::vector<float> l = test_logits(50);
  SamplerParams p;
  p.temperature = 1.0f;
  p.seed = 1234;
  Sampler a(p), b(p);
  p.seed = 1235;
  Sampler c(p);
  const auto da = draws(a, l, 200), db = draws(b, l, 200), dc = draws(c, l, 200);
  CHECK(da == db);
  CHECK(da != dc);
  // And it is really random: more than one distinct token.
  int distinct = 0;
  std::vector<bool> seen(50, false);
  for (int32_t t : da)
    if (!seen[t]) seen[t] = true, ++distinct;
  CHECK(distinct > 5);
}

TEST(sampler_tiny_top_p_keeps_only_the_best) {
  const std::vector<float> l = test_logits(100);
  SamplerParams p;
  p.temperature = 1.5f;
  p.top_p = 1e-6f;
  p.seed = 9;
  Sampler s(p);
  for (int32_t t : draws(s, l, 500)) CHECK(t == argmax(l));
}

TEST(sampler_top_k_1_is_greedy) {
  SamplerParams p;
  p.temperature = 2.0f;
  p.top_k = 1;
  p.seed = 3;
  Sampler s(p);
  for (int n = 2; n < 60; ++n) {
    std::vector<float> l = test_logits(n);
    for (float& x : l) x *= 0.3f + 0.01f * static_cast<float>(n);
    const int want = argmax(l);
    CHECK(s.sample(l.data(), n, {}) == want);
  }
}

TEST(sampler_frequencies_match_softmax) {
  // Temperature 0.7 over 8 tokens, 20000 draws, against softmax(l / 0.7).
  const std::vector<float> l = {1.0f, 0.2f, -0.5f, 0.9f, 2.0f, -3.0f, 0.0f, 1.5f};
  const double temp = 0.7;
  std::vector<double> p(l.size());
  double z = 0;
  for (size_t i = 0; i < l.size(); ++i) z += p[i] = std::exp(l[i] / temp);
  for (double& x : p) x /= z;
  SamplerParams sp;
  sp.temperature = static_cast<float>(temp);
  sp.seed = 2024;
  Sampler s(sp);
  check_frequencies(draws(s, l, 20000), p);
}

TEST(sampler_top_k_renormalises) {
  // top_k 3 at temperature 1: only the three best, in proportion exp(l).
  const std::vector<float> l = {0.0f, 2.0f, 1.0f, -1.0f, 1.5f, 0.5f};
  const double e1 = std::exp(2.0), e4 = std::exp(1.5), e2 = std::exp(1.0), z = e1 + e4 + e2;
  SamplerParams sp;
  sp.temperature = 1.0f;
  sp.top_k = 3;
  sp.seed = 77;
  Sampler s(sp);
  check_frequencies(draws(s, l, 20000), {0, e1 / z, e2 / z, 0, e4 / z, 0});
}

TEST(sampler_top_p_nucleus) {
  // Probabilities 0.5, 0.3, 0.15, 0.05: top_p 0.75 keeps {0.5, 0.3} (0.5 alone is
  // short of 0.75), renormalised to 0.625 / 0.375.
  const std::vector<float> l = {std::log(0.15f), std::log(0.5f), std::log(0.05f), std::log(0.3f)};
  SamplerParams sp;
  sp.temperature = 1.0f;
  sp.top_p = 0.75f;
  sp.seed = 5;
  Sampler s(sp);
  check_frequencies(draws(s, l, 20000), {0, 0.625, 0, 0.375});
  // top_p 0.45 is reached by the best token alone.
  sp.top_p = 0.45f;
  Sampler s2(sp);
  for (int32_t t : draws(s2, l, 200)) CHECK(t == 1);
}

TEST(sampler_repetition_penalty) {
  SamplerParams p;
  p.repeat_penalty = 2.0f;
  p.repeat_last_n = 3;
  Sampler s(p);
  // Token 0 is best but repeated: 2.0 / 2 = 1.0 < 1.5, so greedy moves to token 1.
  std::vector<float> l = {2.0f, 1.5f, -1.0f, 0.5f};
  CHECK(s.sample(l.data(), 4, {0, 0, 2}) == 1);
  CHECK(l[0] == 1.0f);   // divided once although it occurs twice
  CHECK(l[2] == -2.0f);  // negative logits are multiplied
  CHECK(l[1] == 1.5f && l[3] == 0.5f);
  // Only the last repeat_last_n tokens count: token 0 is outside the window.
  std::vector<float> m = {2.0f, 1.5f, -1.0f, 0.5f};
  CHECK(s.sample(m.data(), 4, {0, 3, 3, 2}) == 0);
  CHECK(m[0] == 2.0f && m[3] == 0.25f);
  // When sampling, the penalised token becomes rarer: softmax of the penalised logits.
  SamplerParams q = p;
  q.temperature = 1.0f;
  q.seed = 11;
  Sampler t(q);
  const std::vector<float> base = {1.0f, 1.0f};
  std::vector<int32_t> got;
  for (int i = 0; i < 20000; ++i) {
    std::vector<float> c = base;
    got.push_back(t.sample(c.data(), 2, {0}));
  }
  const double p0 = std::exp(0.5) / (std::exp(0.5) + std::exp(1.0));
  check_frequencies(got, {p0, 1 - p0});
  std::vector<float> bad = {1.0f, 1.0f};
  CHECK_THROWS(t.sample(bad.data(), 2, {5}), "sampler: history token 5 is outside the vocabulary (2)");
}

// The parameters are checked in lib/, not here; out-of-range ones must still
// never read outside the logits or return an id outside the vocabulary.
TEST(sampler_out_of_range_params_stay_in_bounds) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<SamplerParams> cases(10);
  cases[0].temperature = -1.0f;
  cases[1].temperature = nan;
  cases[2].temperature = inf;
  cases[3].temperature = 1.0f, cases[3].top_p = 0.0f;
  cases[4].temperature = 1.0f, cases[4].top_p = -3.0f;
  cases[5].temperature = 1.0f, cases[5].top_p = nan;
  cases[6].temperature = 1.0f, cases[6].top_k = -2;
  cases[7].temperature = 1.0f, cases[7].repeat_penalty = 0.0f;
  cases[8].temperature = 1.0f, cases[8].repeat_penalty = -inf;
  cases[9].temperature = 1.0f, cases[9].repeat_last_n = -1;
  for (size_t c = 0; c < cases.size(); ++c) {
    Sampler s{cases[c]};
    for (int rep = 0; rep < 20; ++rep) {
      std::vector<float> logits = {0.5f, -1.0f, 2.0f, 0.0f};
      const int32_t id = s.sample(logits.data(), 4, {0, 2, 2, 3});
      CHECK(id >= 0 && id < 4);
    }
  }
}

TEST(top_logprobs_log_softmax) {
  const float l[] = {1.0f, 3.0f, 2.0f, 3.0f};
  const double lse = std::log(std::exp(1.0) + 2 * std::exp(3.0) + std::exp(2.0));
  float chosen = 0;
  std::vector<cxr::TokenLogprob> top;
  cxr::top_logprobs(l, 4, 2, 3, &chosen, &top);
  CHECK_NEAR(chosen, 2.0 - lse, 1e-6);
  CHECK(top.size() == 3);
  if (top.size() == 3) {
    CHECK(top[0].token == 1 && top[1].token == 3 && top[2].token == 2);  // ties by id
    CHECK_NEAR(top[0].logprob, 3.0 - lse, 1e-6);
    CHECK_NEAR(top[2].logprob, 2.0 - lse, 1e-6);
  }
  cxr::top_logprobs(l, 4, 0, 10, nullptr, &top);  // n beyond the vocabulary
  CHECK(top.size() == 4);
  cxr::top_logprobs(l, 4, 0, 0, &chosen, &top);
  CHECK(top.empty());
  CHECK_NEAR(chosen, 1.0 - lse, 1e-6);
  // Large logits stay finite (the max is subtracted first).
  const float big[] = {1000.0f, 999.0f};
  cxr::top_logprobs(big, 2, 1, 1, &chosen, &top);
  CHECK_NEAR(chosen, -1.0 - std::log1p(std::exp(-1.0)), 1e-5);
  CHECK_THROWS(cxr::top_logprobs(l, 4, 4, 1, &chosen, &top), "top_logprobs: token 4 is outside the vocabulary (4)");
}
