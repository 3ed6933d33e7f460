// sampler.cpp - greedy and top-k/top-p sampling, repetition penalty, log-probs.
#include "text/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <unordered_set>

#include "types/error.h"

namespace cxr {

namespace {

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// splitmix64: spreads any seed (0 included) over a full xoshiro state.
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Higher logit first; equal logits in id order, so results never depend on the
// sort implementation.
bool better(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
  if (a.first != b.first) return a.first > b.first;
  return a.second < b.second;
}

float finite_or_lowest(float x) { return std::isnan(x) ? -std::numeric_limits<float>::infinity() : x; }

}  // namespace

Rng::Rng(uint64_t seed) {
  uint64_t x = seed;
  for (uint64_t& s : s_) s = splitmix64(x);
}

// xoshiro256**
uint64_t Rng::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

// The top 53 bits as a fraction: every value is exact and < 1.
double Rng::next_double() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

// The parameters are trusted: lib/ checks them (lib/runtime/option-ranges.ts).
// Whatever they hold, sample() stays inside the logits and returns a valid id.
Sampler::Sampler(const SamplerParams& p) : p_(p), rng_(p.seed) {}

int32_t Sampler::sample(float* logits, int32_t n_vocab, const std::vector<int32_t>& history) {
  if (n_vocab <= 0) throw EngineError(err::kArgument, "sampler: n_vocab must be > 0");

  // Repetition penalty (CTRL, as transformers' RepetitionPenaltyLogitsProcessor):
  // each distinct recent token once. Applied before greedy too, as generate() does
  // with do_sample=False, so temperature 0 with a penalty still avoids loops.
  if (p_.repeat_penalty != 1.0f && p_.repeat_last_n > 0) {
    const size_t n = std::min(history.size(), static_cast<size_t>(p_.repeat_last_n));
    std::unordered_set<int32_t> seen;
    for (size_t i = history.size() - n; i < history.size(); ++i) {
      const int32_t t = history[i];
      if (t < 0 || t >= n_vocab)
        throw EngineError(err::kArgument, "sampler: history token " + std::to_string(t) +
                                              " is outside the vocabulary (" + std::to_string(n_vocab) + ")");
      if (!seen.insert(t).second) continue;
      float& l = logits[t];
      l = l > 0.0f ? l / p_.repeat_penalty : l * p_.repeat_penalty;
    }
  }

  if (p_.temperature == 0.0f) {
    int32_t best = 0;
    for (int32_t i = 1; i < n_vocab; ++i)
      if (finite_or_lowest(logits[i]) > finite_or_lowest(logits[best])) best = i;  // strict: lowest id on ties
    return best;
  }

  cand_.resize(static_cast<size_t>(n_vocab));
  for (int32_t i = 0; i < n_vocab; ++i) cand_[i] = {finite_or_lowest(logits[i]), i};

  // Top-k, then every later step sees the candidates sorted best first.
  size_t n = cand_.size();
  if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < n) {
    n = static_cast<size_t>(p_.top_k);
    std::partial_sort(cand_.begin(), cand_.begin() + n, cand_.end(), better);
    cand_.resize(n);
  } else {
    std::sort(cand_.begin(), cand_.end(), better);
  }
  return draw(cand_, n);
}

int32_t Sampler::sample_top_k(std::vector<std::pair<float, int32_t>>& cand) {
  if (cand.empty()) throw EngineError(err::kArgument, "sampler: no candidates");
  return draw(cand, cand.size());
}

int32_t Sampler::draw(std::vector<std::pair<float, int32_t>>& cand, size_t n) {
  // Softmax at temperature, shifted by the max so exp never overflows. The
  // probabilities replace the logits in cand (order is unchanged: exp is monotone).
  const float max_l = cand[0].first;
  if (std::isinf(max_l)) return cand[0].second;  // -inf: nothing is possible; +inf: a certainty
  double sum = 0.0;
  for (auto& c : cand) {
    const double e = std::exp((static_cast<double>(c.first) - max_l) / p_.temperature);
    c.first = static_cast<float>(e);
    sum += e;
  }

  // Top-p: the shortest prefix whose probability reaches top_p (at least one token).
  if (p_.top_p < 1.0f) {
    double cum = 0.0;
    size_t keep = n;
    for (size_t i = 0; i < n; ++i) {
      cum += cand[i].first / sum;
      if (cum >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
    sum = 0.0;
    for (size_t i = 0; i < n; ++i) sum += cand[i].first;
  }

  // Draw from the renormalised distribution over the n survivors.
  const double u = rng_.next_double() * sum;
  double cum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    cum += cand[i].first;
    if (u < cum) return cand[i].second;
  }
  return cand[n - 1].second;  // u landed on rounding slack at the very end
}

void top_logprobs(const float* logits, int32_t n_vocab, int32_t chosen, int32_t n,
                  float* chosen_logprob, std::vector<TokenLogprob>* top) {
  if (n_vocab <= 0) throw EngineError(err::kArgument, "top_logprobs: n_vocab must be > 0");
  if (chosen < 0 || chosen >= n_vocab)
    throw EngineError(err::kArgument, "top_logprobs: token " + std::to_string(chosen) +
                                          " is outside the vocabulary (" + std::to_string(n_vocab) + ")");
  // log softmax(x)_i = x_i - (max + log sum exp(x - max))
  float max_l = -std::numeric_limits<float>::infinity();
  for (int32_t i = 0; i < n_vocab; ++i) max_l = std::max(max_l, finite_or_lowest(logits[i]));
  double sum = 0.0;
  for (int32_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(finite_or_lowest(logits[i])) - max_l);
  const double lse = max_l + std::log(sum);
  if (chosen_logprob) *chosen_logprob = static_cast<float>(finite_or_lowest(logits[chosen]) - lse);
  if (!top) return;
  top->clear();
  const size_t k = static_cast<size_t>(std::clamp(n, 0, n_vocab));
  if (k == 0) return;
  std::vector<std::pair<float, int32_t>> c(static_cast<size_t>(n_vocab));
  for (int32_t i = 0; i < n_vocab; ++i) c[i] = {finite_or_lowest(logits[i]), i};
  std::partial_sort(c.begin(), c.begin() + k, c.end(), better);
  for (size_t i = 0; i < k; ++i) top->push_back({c[i].second, static_cast<float>(c[i].first - lse)});
}

}  // namespace cxr
