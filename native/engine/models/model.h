// model.h - a loaded model: the GGUF file, a backend, the LLaMA decoder with
// its KV cache for several sequences, the tokenizer and the vision tower.
// Generation (prompt segments, sampling, scheduling several requests) is the
// runtime's: runtime/engine.h.
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
  int64_t n_ctx = 0;         // 0: min(trained context, 4096); the most one sequence holds
  DType kv_type = DType::F16;
  int parallel = 1;          // sequences that run together
  int64_t kv_cells = 0;      // KV cache positions for all of them (0: n_ctx * parallel)
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
  // The same into backend memory `out` ([n_patches, dim], be.alloc), for
  // embeddings that stay in the engine (runtime/image_store.h).
  void encode_image_into(const float* pixels, float* out, const std::atomic<bool>* abort);
  Backend& backend() { return *be_; }
  // Why this backend runs the model (choose_backend's reason).
  const std::string& backend_reason() const { return backend_reason_; }
  int device() const { return device_; }  // the CUDA device asked for

  TextModel& text() { return *text_; }

  // Logits for every position of `tokens`, evaluated from an empty cache
  // ([n, n_vocab]) in sequence 0, whose cache it leaves empty. For checking
  // the engine against a reference.
  std::vector<float> eval_logits(const std::vector<int32_t>& tokens);

 private:
  std::unique_ptr<GgufFile> file_;
  std::unique_ptr<Backend> be_;
  std::string backend_reason_;
  int device_ = 0;
  std::unique_ptr<TextModel> text_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<GgufFile> mmproj_file_;
  std::unique_ptr<VisionModel> vision_;
};

}  // namespace cxr
