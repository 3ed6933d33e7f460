// model.cpp - see model.h.
#include "models/model.h"

#include <algorithm>

#include "types/error.h"

namespace cxr {
Model::Model(const ModelOptions& opts) {
  file_ = GgufFile::open(opts.model_path);
  BackendChoice choice = choose_backend(opts.backend, opts.threads, opts.device);
  be_ = std::move(choice.backend);
  backend_reason_ = std::move(choice.reason);
  device_ = opts.device;
  text_ = std::make_unique<TextModel>(*file_, *be_, opts.n_ctx, opts.kv_type, opts.parallel, opts.kv_cells);
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

void Model::encode_image_into(const float* pixels, float* out, const std::atomic<bool>* abort) {
  if (!vision_)
    throw EngineError(err::kModel, file_->path() + ": no vision projector (mmproj) is loaded, so images cannot be read");
  vision_->encode_into(pixels, out, abort);
}

Model::~Model() = default;

std::vector<float> Model::eval_logits(const std::vector<int32_t>& tokens) {
  if (tokens.empty()) throw EngineError(err::kArgument, "eval_logits needs at least one token");
  for (int32_t t : tokens)
    if (t < 0 || t >= text_->config().n_vocab)
      throw EngineError(err::kArgument, "token id " + std::to_string(t) + " is outside the vocabulary");
  // Sequence 0's cache is overwritten (the runtime forgets what it held).
  text_->cells().shrink(0, 0);
  std::vector<float> out(tokens.size() * static_cast<size_t>(text_->config().n_vocab));
  text_->forward(tokens.data(), nullptr, static_cast<int64_t>(tokens.size()), 0, out.data(), true);
  text_->cells().shrink(0, 0);
  return out;
}

}  // namespace cxr
