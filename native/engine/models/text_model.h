// text_model.h - the LLaMA decoder (GGUF architecture "llama") with its KV cache.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.h"

namespace cxr {

class GgufFile;

struct LlamaConfig {
  int32_t n_vocab = 0;
  int32_t dim = 0;          // embedding width
  int32_t n_layers = 0;
  int32_t n_heads = 0;
  int32_t n_kv_heads = 0;   // < n_heads for grouped-query attention
  int32_t head_dim = 0;     // dim / n_heads
  int32_t ffn_dim = 0;
  int64_t ctx_train = 0;    // context length the model was trained with
  float rope_base = 10000.0f;
  float norm_eps = 1e-5f;
};

struct LlamaLayer {
  std::vector<float> attn_norm;  // (dim)
  Weight wq;                     // (n_heads * head_dim, dim)
  Weight wk;                     // (n_kv_heads * head_dim, dim)
  Weight wv;                     // (n_kv_heads * head_dim, dim)
  Weight wo;                     // (dim, n_heads * head_dim)
  std::vector<float> ffn_norm;   // (dim)
  Weight w_gate;                 // (ffn_dim, dim)
  Weight w_up;                   // (ffn_dim, dim)
  Weight w_down;                 // (dim, ffn_dim)
};

struct LlamaWeights {
  Weight tok_embd;               // (n_vocab, dim)
  std::vector<LlamaLayer> layers;
  std::vector<float> out_norm;   // (dim)
  Weight output;                 // (n_vocab, dim); token_embd when the file ties them
};

// Reads hyperparameters from llama.* keys, with the model's own file named in errors.
LlamaConfig read_llama_config(const GgufFile& f);

class TextModel {
 public:
  // n_ctx: KV cache length (0: min(ctx_train, 4096)). kv_type: F16 or F32.
  TextModel(const GgufFile& f, Backend& be, int64_t n_ctx, DType kv_type);
  ~TextModel();
  TextModel(const TextModel&) = delete;
  TextModel& operator=(const TextModel&) = delete;

  const LlamaConfig& config() const { return cfg_; }
  int64_t n_ctx() const { return n_ctx_; }
  size_t kv_bytes() const { return kv_bytes_; }

  // Feeds n positions starting at pos0 into the cache: either token ids or,
  // when `embd` is given, ready-made input embeddings [n, dim] (host memory,
  // e.g. projected image features). Positions >= pos0 + n in the cache become
  // stale. Writes the logits of the last position to `logits` (n_vocab floats,
  // host), or of every position ([n, n_vocab]) when all_logits is set.
  // Throws EngineError(kContext) when pos0 + n exceeds n_ctx, and
  // EngineError(kAborted) when `abort` becomes true (checked between layers, so a
  // long prefill stops within milliseconds).
  void forward(const int32_t* tokens, const float* embd, int64_t n, int64_t pos0, float* logits,
               bool all_logits, const std::atomic<bool>* abort = nullptr);

 private:
  void release();  // frees the cache and scratch; safe to call twice
  void forward_chunk(const int32_t* tokens, const float* embd, int64_t n, int64_t pos0, float* logits,
                     bool all_logits, const std::atomic<bool>* abort);

  LlamaConfig cfg_;
  Backend& be_;
  LlamaWeights w_;
  int64_t n_ctx_ = 0;
  int64_t max_batch_ = 0;
  DType kv_type_;
  size_t kv_bytes_ = 0;
  std::vector<void*> k_cache_, v_cache_;  // per layer: [n_ctx, n_kv_heads * head_dim]
  // Scratch activations for up to max_batch_ rows (logits_: up to kLogitRows).
  float *x_ = nullptr, *xb_ = nullptr, *q_ = nullptr, *k_ = nullptr, *v_ = nullptr, *att_ = nullptr,
        *hb_ = nullptr, *hb2_ = nullptr, *logits_ = nullptr;
};

}  // namespace cxr
