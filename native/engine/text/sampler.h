// sampler.h - picks the next token from logits.
//
// temperature == 0 is greedy (argmax, lowest id on ties). Otherwise the pipeline
// is: repetition penalty -> top-k -> softmax(logits / temperature) -> top-p ->
// draw. The random source is our own (splitmix64 + xoshiro256**), not <random>'s
// distributions, so one seed gives the same text on every platform and compiler.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace cxr {

struct SamplerParams {
  float temperature = 0.0f;
  float top_p = 1.0f;          // 1 disables
  int32_t top_k = 0;           // 0 disables
  float repeat_penalty = 1.0f; // 1 disables; CTRL-style: divide positive logits, multiply negative
  int32_t repeat_last_n = 64;  // how many recent tokens the penalty looks at
  uint64_t seed = 0;
};

class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next_u64();
  double next_double();  // uniform in [0, 1)
 private:
  uint64_t s_[4];
};

class Sampler {
 public:
  explicit Sampler(const SamplerParams& p);
  // Chooses a token. `logits` has n_vocab entries and may be modified.
  // `history` is every token so far (prompt and generated), for the penalty.
  int32_t sample(float* logits, int32_t n_vocab, const std::vector<int32_t>& history);
  // The same from the k best (logit, id) pairs, best first (ties: lower id
  // first), as a backend's top_k gives them: exactly what sample() picks with
  // top_k = k, no repetition penalty and temperature > 0.
  int32_t sample_top_k(std::vector<std::pair<float, int32_t>>& cand);
  const SamplerParams& params() const { return p_; }

 private:
  // Softmax at temperature, top-p and the draw, over candidates sorted best first.
  int32_t draw(std::vector<std::pair<float, int32_t>>& cand, size_t n);

  SamplerParams p_;
  Rng rng_;
  std::vector<std::pair<float, int32_t>> cand_;  // reused scratch
};

// log-softmax of logits (without temperature) and the n most likely tokens.
struct TokenLogprob { int32_t token; float logprob; };
void top_logprobs(const float* logits, int32_t n_vocab, int32_t chosen, int32_t n,
                  float* chosen_logprob, std::vector<TokenLogprob>* top);

}  // namespace cxr
