// engine.cpp - see engine.h.
#include "runtime/engine.h"

#include <cstdlib>
#include <string>

#include "runtime/content_hash.h"
#include "types/error.h"

namespace cxr {
namespace {

// CXR_PREFILL_CHUNK: prompt rows per step while others decode (for measuring).
SchedulerOptions scheduler_options() {
  SchedulerOptions o;
  if (const char* env = std::getenv("CXR_PREFILL_CHUNK")) {
    const long v = std::strtol(env, nullptr, 10);
    if (v > 0) o.prefill_chunk = v;
  }
  return o;
}

}  // namespace

Engine::Engine(const ModelOptions& opts) : model_(std::make_unique<Model>(opts)) {
  sched_ = std::make_unique<Scheduler>(model_->text(), model_->backend(), model_->tokenizer(), scheduler_options());
  // Memory let go of from another thread is freed here, between steps.
  images_ = ImageStore::create(model_->backend(), [this] { sched_->submit_task([this] { images_->collect(); }); });
}

Engine::~Engine() { images_->close(); }

std::shared_ptr<ImageEmbedding> Engine::encode_image(const float* pixels, const std::atomic<bool>* abort) {
  const VisionModel* v = model_->vision();
  if (!v)
    throw EngineError(err::kModel,
                      model_->file().path() + ": no vision projector (mmproj) is loaded, so images cannot be read");
  const VisionConfig& c = v->config();
  const size_t n_pixels = static_cast<size_t>(c.channels) * c.image_size * c.image_size;
  const uint64_t key = content_hash(pixels, n_pixels * sizeof(float));
  const int64_t rows = c.n_patches(), dim = c.proj_dim;
  images_->collect();
  Backend& be = model_->backend();
  float* out = be.alloc(static_cast<size_t>(rows * dim));
  try {
    model_->encode_image_into(pixels, out, abort);
    be.sync();  // complete before any thread may copy it out
    return images_->adopt(out, rows, dim, key);
  } catch (...) {
    be.free(out);
    throw;
  }
}

GenerateResult Engine::generate(const std::vector<PromptSegment>& prompt, const GenerateParams& params,
                                const std::function<void(const GeneratedToken&)>& on_token,
                                const std::atomic<bool>* abort) {
  auto req = std::make_shared<GenerateRequest>();
  req->prompt = prompt;
  req->params = params;
  req->on_token = on_token;
  GenerateResult out;
  std::string err_code, err_msg;
  req->on_done = [&](GenerateResult&& r) { out = std::move(r); };
  req->on_error = [&](const std::string& code, const std::string& msg) {
    err_code = code;
    err_msg = msg;
  };
  // The caller's flag reaches the request's own between tokens.
  if (abort) {
    auto flag = req->abort;
    auto user = req->on_token;
    req->on_token = [flag, abort, user](const GeneratedToken& t) {
      if (user) user(t);
      if (abort->load()) flag->store(true);
    };
    if (abort->load()) req->abort->store(true);
  }
  sched_->submit(req);
  sched_->run_until_idle();
  if (!err_code.empty()) throw EngineError(err_code, err_msg);
  return out;
}

std::vector<float> Engine::eval_logits(const std::vector<int32_t>& tokens) {
  sched_->reset_cache();
  return model_->eval_logits(tokens);
}

}  // namespace cxr
