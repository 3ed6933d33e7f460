// engine.h - a loaded model with the scheduler that runs generations on it.
//
// Callers that serve many requests (the Node addon) run scheduler().run() on
// one engine thread and submit from anywhere; a single caller can use
// generate(), which runs the scheduler on its own thread until done.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "models/model.h"
#include "runtime/generation.h"
#include "runtime/image_store.h"
#include "runtime/scheduler.h"

namespace cxr {

class Engine {
 public:
  explicit Engine(const ModelOptions& opts);
  // Frees every encoded image still held (their handles then report the model closed).
  ~Engine();

  Model& model() { return *model_; }
  const Model& model() const { return *model_; }
  Scheduler& scheduler() { return *sched_; }

  // One generation on the calling thread (no engine thread may be running):
  // runs the prompt and samples up to max_tokens. `on_token` sees each token as
  // it is produced; `abort` (may be null) is polled between steps. Throws
  // EngineError(kContext) when the prompt does not fit.
  GenerateResult generate(const std::vector<PromptSegment>& prompt, const GenerateParams& params,
                          const std::function<void(const GeneratedToken&)>& on_token,
                          const std::atomic<bool>* abort);

  // Model::eval_logits, after which no sequence trusts its cache. Run it on the
  // engine thread (or with none running).
  std::vector<float> eval_logits(const std::vector<int32_t>& tokens);

  // Runs the vision tower on preprocessed pixels ([channels, size, size],
  // normalised, host) into an embedding that stays in backend memory, keyed by
  // a hash of the pixels. On the engine thread (or with none running).
  // Throws EngineError(kModel) without an mmproj, kAborted when aborted.
  std::shared_ptr<ImageEmbedding> encode_image(const float* pixels, const std::atomic<bool>* abort);
  // The encoded images of this engine.
  ImageStore& images() { return *images_; }

 private:
  std::unique_ptr<Model> model_;
  std::unique_ptr<Scheduler> sched_;
  std::shared_ptr<ImageStore> images_;
};

}  // namespace cxr
