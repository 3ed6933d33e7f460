// model.h - a loaded model you can talk to: the GGUF file, a backend, the
// LLaMA decoder with its KV cache, the tokenizer, and the generation loop.
//
// The data path: prompt segments (token ids and ready-made embeddings) ->
// TextModel::forward -> logits -> Sampler -> token -> Detokenizer -> text.
// The KV cache is kept between calls: a new prompt that starts with the
// previous one (a chat follow-up) only runs the positions that are new.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "format/gguf.h"
#include "text/sampler.h"
#include "models/text_model.h"
#include "text/tokenizer.h"
#include "models/vision.h"

namespace cxr {

struct ModelOptions {
  std::string model_path;
  std::string mmproj_path;   // empty: text only
  std::string backend = "cpu";  // "auto" or a name make_backend() knows (backend/backend.h)
  int device = 0;            // CUDA device index
  int threads = 0;           // 0: ThreadPool::default_threads()
  int64_t n_ctx = 0;         // 0: min(trained context, 4096)
  DType kv_type = DType::F16;
};

// A run of prompt positions: token ids, or `n_embd` rows of input embeddings
// (host memory, [n_embd, dim]) that stand for something the tokenizer cannot
// express, like an image. `embd_id` names the embedding content so the cache can
// recognise it again; give different content different ids.
struct PromptSegment {
  std::vector<int32_t> tokens;
  const float* embd = nullptr;
  int64_t n_embd = 0;
  uint64_t embd_id = 0;
};

struct GenerateParams {
  SamplerParams sampling;
  int32_t max_tokens = 512;
  std::vector<std::string> stop;  // text that ends generation (not included in the output)
  int32_t logprobs = 0;           // >0: record that many alternatives per token
  bool stop_at_eos = true;
};

// One step of generation as on_token sees it. A final step with id == -1
// carries only text: what was held back (a possible stop string, a partial
// UTF-8 character) when generation ended for another reason.
struct GeneratedToken {
  int32_t id;
  std::string text;                // text completed by this token (may be empty)
  float logprob = 0;               // only with logprobs > 0
  std::vector<TokenLogprob> top;   // only with logprobs > 0
};

struct GenerateResult {
  std::vector<GeneratedToken> tokens;
  std::string text;
  std::string finish_reason;       // "stop" (EOS or a stop string), "length", "abort"
  int64_t prompt_tokens = 0;       // positions in the prompt
  int64_t prefill_tokens = 0;      // positions actually computed (the rest came from the cache)
  double prefill_ms = 0;
  int64_t decode_tokens = 0;
  double decode_ms = 0;
};

class Model {
 public:
  explicit Model(const ModelOptions& opts);
  ~Model();

  const GgufFile& file() const { return *file_; }
  const Tokenizer& tokenizer() const { return *tok_; }
  const TextModel& text() const { return *text_; }
  // The vision tower, or null when no mmproj was loaded.
  const VisionModel* vision() const { return vision_.get(); }
  const GgufFile* mmproj_file() const { return mmproj_file_.get(); }

  // Encodes one preprocessed image ([channels, size, size], normalised) into
  // [n_patches, dim] input embeddings for the language model. Throws
  // EngineError(kModel) without an mmproj, EngineError(kAborted) when aborted.
  std::vector<float> encode_image(const float* pixels, const std::atomic<bool>* abort);
  Backend& backend() { return *be_; }
  // Why this backend runs the model (choose_backend's reason).
  const std::string& backend_reason() const { return backend_reason_; }
  int device() const { return device_; }  // the CUDA device asked for

  // Runs the prompt and samples up to max_tokens. `on_token` sees each token as
  // it is produced; `abort` (may be null) is polled between tokens. Throws
  // EngineError(kContext) when the prompt does not fit.
  GenerateResult generate(const std::vector<PromptSegment>& prompt, const GenerateParams& params,
                          const std::function<void(const GeneratedToken&)>& on_token,
                          const std::atomic<bool>* abort);

  // Logits for every position of `tokens`, evaluated from an empty cache
  // ([n, n_vocab]). For checking the engine against a reference.
  std::vector<float> eval_logits(const std::vector<int32_t>& tokens);

  // Forgets the cached prompt.
  void reset_cache() { cached_.clear(); }

 private:
  void feed(const std::vector<PromptSegment>& prompt, int64_t from, float* logits, const std::atomic<bool>* abort);

  std::unique_ptr<GgufFile> file_;
  std::unique_ptr<Backend> be_;
  std::string backend_reason_;
  int device_ = 0;
  std::unique_ptr<TextModel> text_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<GgufFile> mmproj_file_;
  std::unique_ptr<VisionModel> vision_;
  // What the KV cache holds, one key per position: a token id, or
  // (1<<63 | embd_id<<24 | row) for an embedding row.
  std::vector<uint64_t> cached_;
};

}  // namespace cxr
