// text_model.cpp - the LLaMA forward pass, step for step as in HF's LlamaModel.
#include "models/text_model.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "types/error.h"
#include "format/gguf.h"
#include "types/quants.h"

namespace cxr {
namespace {

// Prompt positions processed per forward chunk: bounds the scratch memory
// ([chunk, ffn_dim] floats, ~190 KB a position for 7B) while keeping matmuls
// wide: a chunk packs each weight panel once, and on the 7B Q4_0 a 1024-token
// prefill ran at 40.4/39.9 tokens/s in chunks of 256 and 44.6/41.7 in 512s.
constexpr int64_t kMaxBatch = 512;
// Logit rows computed per output matmul when every position's logits are
// wanted; the buffer would otherwise be the largest scratch (n_vocab floats a row).
constexpr int64_t kLogitRows = 32;

std::vector<float> read_vector(const GgufFile& f, const std::string& name, int64_t n) {
  const GgufTensor& t = f.require_tensor(name, {n});
  std::vector<float> out(n);
  type_traits_reference(t.type).to_float(t.data, out.data(), n);
  return out;
}

Weight read_matrix(const GgufFile& f, Backend& be, const std::string& name, int64_t rows, int64_t cols) {
  return be.weight(f.require_tensor(name, {cols, rows}));
}

// A matrix only matmul reads, which the backend may rearrange (matmul_weight).
Weight read_matmul_weight(const GgufFile& f, Backend& be, const std::string& name, int64_t rows, int64_t cols) {
  return be.matmul_weight(f.require_tensor(name, {cols, rows}));
}

int32_t as_i32(const GgufFile& f, const char* key, uint64_t v, uint64_t max) {
  if (v == 0 || v > max)
    throw EngineError(err::kModel, f.path() + ": " + key + " = " + std::to_string(v) + " is out of range");
  return static_cast<int32_t>(v);
}

}  // namespace

LlamaConfig read_llama_config(const GgufFile& f) {
  const std::string arch = f.get_str("general.architecture");
  if (arch != "llama")
    throw EngineError(err::kModel, f.path() + ": architecture \"" + arch + "\" is not a LLaMA text model");
  LlamaConfig c;
  c.dim = as_i32(f, "llama.embedding_length", f.get_u64("llama.embedding_length"), 1 << 16);
  c.n_layers = as_i32(f, "llama.block_count", f.get_u64("llama.block_count"), 1024);
  c.n_heads = as_i32(f, "llama.attention.head_count", f.get_u64("llama.attention.head_count"), 1024);
  c.n_kv_heads = as_i32(f, "llama.attention.head_count_kv",
                        f.get_u64("llama.attention.head_count_kv", static_cast<uint64_t>(c.n_heads)), 1024);
  c.ffn_dim = as_i32(f, "llama.feed_forward_length", f.get_u64("llama.feed_forward_length"), 1 << 20);
  c.ctx_train = as_i32(f, "llama.context_length", f.get_u64("llama.context_length", 2048), 1 << 24);
  c.rope_base = static_cast<float>(f.get_f64("llama.rope.freq_base", 10000.0));
  c.norm_eps = static_cast<float>(f.get_f64("llama.attention.layer_norm_rms_epsilon", 1e-5));
  if (c.dim % c.n_heads != 0)
    throw EngineError(err::kModel, f.path() + ": embedding_length " + std::to_string(c.dim) +
                                       " is not divisible by head_count " + std::to_string(c.n_heads));
  if (c.n_heads % c.n_kv_heads != 0)
    throw EngineError(err::kModel, f.path() + ": head_count " + std::to_string(c.n_heads) +
                                       " is not a multiple of head_count_kv " + std::to_string(c.n_kv_heads));
  c.head_dim = c.dim / c.n_heads;
  const uint64_t rope_dim = f.get_u64("llama.rope.dimension_count", static_cast<uint64_t>(c.head_dim));
  if (rope_dim != static_cast<uint64_t>(c.head_dim) || c.head_dim % 2 != 0)
    throw EngineError(err::kModel, f.path() + ": partial or odd rotary dimensions are not supported");
  if (!(c.rope_base > 0) || !(c.norm_eps >= 0))
    throw EngineError(err::kModel, f.path() + ": rope.freq_base or layer_norm_rms_epsilon is invalid");
  const GgufTensor* embd = f.tensor("token_embd.weight");
  if (!embd) throw EngineError(err::kModel, f.path() + ": tensor token_embd.weight is missing");
  c.n_vocab = as_i32(f, "token_embd.weight rows", static_cast<uint64_t>(embd->ne[1]), 1 << 22);
  return c;
}

TextModel::TextModel(const GgufFile& f, Backend& be, int64_t n_ctx, DType kv_type)
    : cfg_(read_llama_config(f)), be_(be), kv_type_(kv_type) {
  if (kv_type != DType::F32 && kv_type != DType::F16)
    throw EngineError(err::kArgument, "KV cache type must be f16 or f32");
  const LlamaConfig& c = cfg_;
  const int64_t kv_dim = static_cast<int64_t>(c.n_kv_heads) * c.head_dim;

  // Weights: views into the mapping, or the backend's rearranged copies of
  // matmul-only ones (norm vectors are copied to F32: tiny).
  w_.tok_embd = read_matrix(f, be, "token_embd.weight", c.n_vocab, c.dim);
  w_.layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LlamaLayer& L = w_.layers[l];
    L.attn_norm = read_vector(f, p + "attn_norm.weight", c.dim);
    L.wq = read_matmul_weight(f, be, p + "attn_q.weight", c.dim, c.dim);
    L.wk = read_matmul_weight(f, be, p + "attn_k.weight", kv_dim, c.dim);
    L.wv = read_matmul_weight(f, be, p + "attn_v.weight", kv_dim, c.dim);
    L.wo = read_matmul_weight(f, be, p + "attn_output.weight", c.dim, c.dim);
    L.ffn_norm = read_vector(f, p + "ffn_norm.weight", c.dim);
    L.w_gate = read_matmul_weight(f, be, p + "ffn_gate.weight", c.ffn_dim, c.dim);
    L.w_up = read_matmul_weight(f, be, p + "ffn_up.weight", c.ffn_dim, c.dim);
    L.w_down = read_matmul_weight(f, be, p + "ffn_down.weight", c.dim, c.ffn_dim);
  }
  w_.out_norm = read_vector(f, "output_norm.weight", c.dim);
  w_.output = f.tensor("output.weight") ? read_matmul_weight(f, be, "output.weight", c.n_vocab, c.dim) : w_.tok_embd;

  n_ctx_ = n_ctx > 0 ? n_ctx : std::min<int64_t>(c.ctx_train, 4096);
  if (n_ctx_ > (int64_t{1} << 20)) throw EngineError(err::kArgument, "context size is too large");
  max_batch_ = std::min<int64_t>(kMaxBatch, n_ctx_);

  // KV cache: one [n_ctx, kv_dim] matrix per layer for K and for V.
  const size_t esize = kv_type == DType::F32 ? 4 : 2;
  const size_t per = static_cast<size_t>(n_ctx_) * kv_dim * esize;
  try {
    for (int l = 0; l < c.n_layers; ++l) {
      k_cache_.push_back(be.alloc_bytes(per));
      v_cache_.push_back(be.alloc_bytes(per));
    }
    kv_bytes_ = 2 * per * c.n_layers;
    const int64_t B = max_batch_;
    x_ = be.alloc(B * c.dim);
    xb_ = be.alloc(B * c.dim);
    q_ = be.alloc(B * c.dim);
    k_ = be.alloc(B * kv_dim);
    v_ = be.alloc(B * kv_dim);
    att_ = be.alloc(B * c.dim);
    hb_ = be.alloc(B * c.ffn_dim);
    hb2_ = be.alloc(B * c.ffn_dim);
    logits_ = be.alloc(std::min(B, kLogitRows) * c.n_vocab);
  } catch (...) {
    release();
    throw;
  }
}

TextModel::~TextModel() { release(); }

void TextModel::release() {
  for (void* p : k_cache_) be_.free_bytes(p);
  for (void* p : v_cache_) be_.free_bytes(p);
  k_cache_.clear();
  v_cache_.clear();
  for (float** p : {&x_, &xb_, &q_, &k_, &v_, &att_, &hb_, &hb2_, &logits_}) {
    if (*p) be_.free(*p);
    *p = nullptr;
  }
}

void TextModel::forward(const int32_t* tokens, const float* embd, int64_t n, int64_t pos0, float* logits,
                        bool all_logits, const std::atomic<bool>* abort) {
  if (n <= 0) throw EngineError(err::kArgument, "forward() needs at least one position");
  if (pos0 < 0 || pos0 + n > n_ctx_)
    throw EngineError(err::kContext, "the sequence needs " + std::to_string(pos0 + n) +
                                         " positions but the context holds " + std::to_string(n_ctx_) +
                                         " (raise contextSize)");
  for (int64_t done = 0; done < n; done += max_batch_) {
    const int64_t m = std::min(max_batch_, n - done);
    const bool last = done + m == n;
    float* out = all_logits ? logits + done * cfg_.n_vocab : (last ? logits : nullptr);
    forward_chunk(tokens ? tokens + done : nullptr, embd ? embd + done * cfg_.dim : nullptr, m, pos0 + done,
                  out, all_logits, abort);
  }
}

void TextModel::forward_chunk(const int32_t* tokens, const float* embd, int64_t n, int64_t pos0,
                              float* logits, bool all_logits, const std::atomic<bool>* abort) {
  const LlamaConfig& c = cfg_;
  const int64_t dim = c.dim, kv_dim = static_cast<int64_t>(c.n_kv_heads) * c.head_dim;
  Backend& be = be_;

  // x = embed_tokens(input_ids), or the given embeddings
  if (embd) be.from_host(x_, embd, n * dim);
  else be.get_rows(w_.tok_embd, tokens, n, x_);

  for (int l = 0; l < c.n_layers; ++l) {
    if (abort && abort->load(std::memory_order_relaxed)) throw EngineError(err::kAborted, "generation aborted");
    const LlamaLayer& L = w_.layers[l];
    // xb = input_layernorm(x) (from layer 1 on, the previous layer's fused residual step did it)
    if (l == 0) be.rmsnorm(x_, L.attn_norm.data(), n, dim, c.norm_eps, xb_);
    // q, k, v = q_proj(xb), k_proj(xb), v_proj(xb)
    be.matmul(L.wq, xb_, n, q_);
    be.matmul(L.wk, xb_, n, k_);
    be.matmul(L.wv, xb_, n, v_);
    // apply_rotary_pos_emb (adjacent-pair form; the converter permuted Q/K rows to match)
    be.rope(q_, n, c.n_heads, c.head_dim, pos0, c.rope_base);
    be.rope(k_, n, c.n_kv_heads, c.head_dim, pos0, c.rope_base);
    // past_key_value.update(k, v)
    be.store_rows(k_cache_[l], kv_type_, pos0, k_, n, kv_dim);
    be.store_rows(v_cache_[l], kv_type_, pos0, v_, n, kv_dim);
    // att = softmax(q kᵀ / sqrt(head_dim) + causal mask) v, KV heads shared by groups of query heads
    AttentionArgs a;
    a.q = q_;
    a.k = k_cache_[l];
    a.v = v_cache_[l];
    a.kv_type = kv_type_;
    a.out = att_;
    a.n = n;
    a.n_kv = pos0 + n;
    a.pos0 = pos0;
    a.n_heads = c.n_heads;
    a.n_kv_heads = c.n_kv_heads;
    a.head_dim = c.head_dim;
    a.causal = true;
    a.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    be.attention(a);
    // x = x + o_proj(att); xb = post_attention_layernorm(x)
    be.matmul(L.wo, att_, n, xb_);
    be.add_rmsnorm(x_, xb_, L.ffn_norm.data(), n, dim, c.norm_eps, xb_);
    // x = x + down_proj(silu(gate_proj(xb)) * up_proj(xb))
    be.matmul(L.w_gate, xb_, n, hb_);
    be.matmul(L.w_up, xb_, n, hb2_);
    be.silu_mul(hb_, hb2_, n * c.ffn_dim);
    be.matmul(L.w_down, hb_, n, xb_);
    if (l + 1 < c.n_layers) {
      // ...and xb = the next layer's input_layernorm(x), in the same pass
      be.add_rmsnorm(x_, xb_, w_.layers[l + 1].attn_norm.data(), n, dim, c.norm_eps, xb_);
    } else {
      be.add(x_, xb_, n * dim);
    }
  }

  if (!logits) return;  // an early prompt chunk: only the cache mattered
  // logits = lm_head(norm(x)), for the last row unless every row is wanted
  const int64_t first = all_logits ? 0 : n - 1;
  const int64_t rows = n - first;
  be.rmsnorm(x_ + first * dim, w_.out_norm.data(), rows, dim, c.norm_eps, xb_);
  for (int64_t r = 0; r < rows; r += kLogitRows) {
    const int64_t m = std::min(kLogitRows, rows - r);
    be.matmul(w_.output, xb_ + r * dim, m, logits_);
    be.sync();
    be.to_host(logits + r * c.n_vocab, logits_, m * c.n_vocab);
  }
}

}  // namespace cxr
