// model.cpp - see model.h.
#include "models/model.h"

#include <algorithm>
#include <chrono>

#include "types/error.h"

namespace cxr {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

uint64_t embd_key(uint64_t id, int64_t row) {
  return (uint64_t{1} << 63) | ((id & 0x7fffffffffULL) << 24) | static_cast<uint64_t>(row & 0xffffff);
}

std::vector<uint64_t> prompt_keys(const std::vector<PromptSegment>& prompt) {
  std::vector<uint64_t> keys;
  for (const auto& s : prompt) {
    if (s.embd) {
      for (int64_t r = 0; r < s.n_embd; ++r) keys.push_back(embd_key(s.embd_id, r));
    } else {
      for (int32_t t : s.tokens) keys.push_back(static_cast<uint32_t>(t));
    }
  }
  return keys;
}

// Length of the longest suffix of `text` that is a proper prefix of some stop
// string: that much must be held back, as the next token may complete it.
size_t held_back(const std::string& text, const std::vector<std::string>& stop) {
  size_t keep = 0;
  for (const auto& s : stop) {
    for (size_t len = std::min(s.size() - 1, text.size()); len > keep; --len) {
      if (text.compare(text.size() - len, len, s, 0, len) == 0) {
        keep = len;
        break;
      }
    }
  }
  return keep;
}

}  // namespace

Model::Model(const ModelOptions& opts) {
  file_ = GgufFile::open(opts.model_path);
  BackendChoice choice = choose_backend(opts.backend, opts.threads, opts.device);
  be_ = std::move(choice.backend);
  backend_reason_ = std::move(choice.reason);
  device_ = opts.device;
  text_ = std::make_unique<TextModel>(*file_, *be_, opts.n_ctx, opts.kv_type);
  tok_ = std::make_unique<Tokenizer>(*file_);
  if (tok_->n_vocab() != text_->config().n_vocab)
    throw EngineError(err::kModel, file_->path() + ": the vocabulary has " + std::to_string(tok_->n_vocab()) +
                                       " tokens but token_embd.weight has " +
                                       std::to_string(text_->config().n_vocab) + " rows");
  if (!opts.mmproj_path.empty()) {
    mmproj_file_ = GgufFile::open(opts.mmproj_path);
    vision_ = std::make_unique<VisionModel>(*mmproj_file_, *be_);
    // The projector must land in the language model's embedding space.
    if (vision_->config().proj_dim != text_->config().dim)
      throw EngineError(err::kModel, mmproj_file_->path() + ": the projector outputs " +
                                         std::to_string(vision_->config().proj_dim) + " values per token but " +
                                         file_->path() + " expects embeddings of " +
                                         std::to_string(text_->config().dim));
  }
}

std::vector<float> Model::encode_image(const float* pixels, const std::atomic<bool>* abort) {
  if (!vision_)
    throw EngineError(err::kModel, file_->path() + ": no vision projector (mmproj) is loaded, so images cannot be read");
  std::vector<float> out(static_cast<size_t>(vision_->config().n_patches()) * vision_->config().proj_dim);
  vision_->encode(pixels, out.data(), abort);
  return out;
}

Model::~Model() = default;

void Model::feed(const std::vector<PromptSegment>& prompt, int64_t from, float* logits,
                 const std::atomic<bool>* abort) {
  // Walk the segments, skipping the first `from` positions (already cached),
  // and forward each remaining run; only the very last run yields logits.
  int64_t pos = 0;
  const int64_t total = static_cast<int64_t>(prompt_keys(prompt).size());
  for (const auto& s : prompt) {
    const int64_t len = s.embd ? s.n_embd : static_cast<int64_t>(s.tokens.size());
    const int64_t begin = std::max<int64_t>(from - pos, 0);
    if (begin < len) {
      const int64_t n = len - begin;
      const bool last = pos + len == total;
      if (s.embd)
        text_->forward(nullptr, s.embd + begin * text_->config().dim, n, pos + begin, last ? logits : nullptr,
                       false, abort);
      else
        text_->forward(s.tokens.data() + begin, nullptr, n, pos + begin, last ? logits : nullptr, false, abort);
    }
    pos += len;
  }
}

GenerateResult Model::generate(const std::vector<PromptSegment>& prompt, const GenerateParams& params,
                               const std::function<void(const GeneratedToken&)>& on_token,
                               const std::atomic<bool>* abort) {
  const LlamaConfig& c = text_->config();
  for (const auto& s : prompt) {
    if (s.embd && s.n_embd <= 0) throw EngineError(err::kArgument, "an embedding segment has no rows");
    for (int32_t t : s.tokens)
      if (t < 0 || t >= c.n_vocab)
        throw EngineError(err::kArgument, "token id " + std::to_string(t) + " is outside the vocabulary");
  }
  const std::vector<uint64_t> keys = prompt_keys(prompt);
  const int64_t n_prompt = static_cast<int64_t>(keys.size());
  if (n_prompt == 0) throw EngineError(err::kArgument, "the prompt is empty");
  if (n_prompt > text_->n_ctx())
    throw EngineError(err::kContext, "the prompt has " + std::to_string(n_prompt) +
                                         " positions but the context holds " + std::to_string(text_->n_ctx()) +
                                         " (raise contextSize)");

  GenerateResult res;
  res.prompt_tokens = n_prompt;

  // Reuse the cached prefix; at least the last prompt position is recomputed,
  // because its logits are what the first token is sampled from.
  int64_t reuse = 0;
  while (reuse < static_cast<int64_t>(cached_.size()) && reuse < n_prompt && cached_[reuse] == keys[reuse]) ++reuse;
  reuse = std::min(reuse, n_prompt - 1);
  cached_.resize(reuse);

  std::vector<float> logits(c.n_vocab);
  auto t0 = Clock::now();
  try {
    feed(prompt, reuse, logits.data(), abort);
  } catch (const EngineError& e) {
    // The cache now holds an unknown part of the prompt: trust only the reused prefix.
    if (e.code() == err::kAborted) {
      res.finish_reason = "abort";
      res.prefill_ms = ms_since(t0);
      return res;
    }
    throw;
  }
  cached_ = keys;
  res.prefill_tokens = n_prompt - reuse;
  res.prefill_ms = ms_since(t0);

  Sampler sampler(params.sampling);
  Detokenizer detok(*tok_);
  std::vector<int32_t> history;
  for (uint64_t k : keys)
    if (!(k >> 63)) history.push_back(static_cast<int32_t>(k));

  std::string text;        // everything decoded so far
  size_t emitted = 0;      // bytes of `text` already handed to on_token
  auto t1 = Clock::now();
  res.finish_reason = "length";
  for (int32_t i = 0; i < params.max_tokens; ++i) {
    if (abort && abort->load()) {
      res.finish_reason = "abort";
      break;
    }
    GeneratedToken gt;
    std::vector<float> raw;
    if (params.logprobs > 0) raw = logits;  // the sampler modifies logits in place
    gt.id = sampler.sample(logits.data(), c.n_vocab, history);
    if (params.logprobs > 0) top_logprobs(raw.data(), c.n_vocab, gt.id, params.logprobs, &gt.logprob, &gt.top);
    history.push_back(gt.id);
    ++res.decode_tokens;

    bool done = false;
    if (params.stop_at_eos && gt.id == tok_->eos()) {
      text += detok.flush();
      res.finish_reason = "stop";
      done = true;
    } else {
      text += detok.push(gt.id);
      // A stop string can only start in text not yet handed out (see held_back).
      size_t cut = std::string::npos;
      for (const auto& st : params.stop)
        if (!st.empty()) cut = std::min(cut, text.find(st, emitted));
      if (cut != std::string::npos) {
        text.resize(cut);
        res.finish_reason = "stop";
        done = true;
      }
    }
    // Hand over the text that can no longer turn out to be part of a stop string.
    const size_t safe = done ? text.size() : text.size() - held_back(text, params.stop);
    if (safe > emitted) {
      gt.text = text.substr(emitted, safe - emitted);
      emitted = safe;
    }
    res.tokens.push_back(gt);
    if (on_token) on_token(res.tokens.back());
    if (done) break;
    if (static_cast<int64_t>(cached_.size()) >= text_->n_ctx()) {
      res.finish_reason = "length";  // the context is full
      break;
    }
    if (i + 1 < params.max_tokens) {
      try {
        text_->forward(&gt.id, nullptr, 1, static_cast<int64_t>(cached_.size()), logits.data(), false, abort);
      } catch (const EngineError& e) {
        if (e.code() != err::kAborted) throw;
        res.finish_reason = "abort";
        break;
      }
      cached_.push_back(static_cast<uint32_t>(gt.id));
    }
  }
  if (res.finish_reason != "stop") text += detok.flush();
  if (text.size() > emitted && !res.tokens.empty()) {
    // Held-back text that never became a stop string belongs to the output.
    GeneratedToken tail{-1, text.substr(emitted), 0, {}};
    emitted = text.size();
    res.tokens.back().text += tail.text;
    if (on_token) on_token(tail);
  }
  res.text = text;
  res.decode_ms = ms_since(t1);
  return res;
}

std::vector<float> Model::eval_logits(const std::vector<int32_t>& tokens) {
  if (tokens.empty()) throw EngineError(err::kArgument, "eval_logits needs at least one token");
  for (int32_t t : tokens)
    if (t < 0 || t >= text_->config().n_vocab)
      throw EngineError(err::kArgument, "token id " + std::to_string(t) + " is outside the vocabulary");
  cached_.clear();
  std::vector<float> out(tokens.size() * static_cast<size_t>(text_->config().n_vocab));
  text_->forward(tokens.data(), nullptr, static_cast<int64_t>(tokens.size()), 0, out.data(), true);
  cached_.assign(tokens.begin(), tokens.end());
  return out;
}

}  // namespace cxr
