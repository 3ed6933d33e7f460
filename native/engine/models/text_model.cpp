// text_model.cpp - the LLaMA forward pass, step for step as in HF's LlamaModel.
#include "models/text_model.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "types/error.h"
#include "format/gguf.h"
#include "types/quants.h"
#include "types/limits.h"

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

// A norm vector, converted to F32 and uploaded once.
WeightPtr read_vector(const GgufFile& f, Backend& be, const std::string& name, int64_t n) {
  return be.upload(tensor_view(f.require_tensor(name, {n})), WeightUse::Vector);
}

// A matrix only matmul reads, which the backend may rearrange (WeightUse::Matmul).
WeightPtr read_matrix(const GgufFile& f, Backend& be, const std::string& name, int64_t rows, int64_t cols,
                      WeightUse use = WeightUse::Matmul) {
  return be.upload(tensor_view(f.require_tensor(name, {cols, rows})), use);
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

TextModel::TextModel(const GgufFile& f, Backend& be, int64_t n_ctx, DType kv_type, int n_seq, int64_t kv_cells)
    : cfg_(read_llama_config(f)), be_(be), kv_type_(kv_type), cells_(1, 1) {
  if (kv_type != DType::F32 && kv_type != DType::F16)
    throw EngineError(err::kArgument, "KV cache type must be f16 or f32");
  const LlamaConfig& c = cfg_;
  const int64_t kv_dim = static_cast<int64_t>(c.n_kv_heads) * c.head_dim;

  // Weights: the backend's (views into the mapping, rearranged copies of
  // matmul-only ones, F32 copies of the norm vectors: tiny).
  w_.tok_embd = read_matrix(f, be, "token_embd.weight", c.n_vocab, c.dim, WeightUse::Rows);
  w_.layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LlamaLayer& L = w_.layers[l];
    L.attn_norm = read_vector(f, be, p + "attn_norm.weight", c.dim);
    L.wq = read_matrix(f, be, p + "attn_q.weight", c.dim, c.dim);
    L.wk = read_matrix(f, be, p + "attn_k.weight", kv_dim, c.dim);
    L.wv = read_matrix(f, be, p + "attn_v.weight", kv_dim, c.dim);
    L.wo = read_matrix(f, be, p + "attn_output.weight", c.dim, c.dim);
    L.ffn_norm = read_vector(f, be, p + "ffn_norm.weight", c.dim);
    L.w_gate = read_matrix(f, be, p + "ffn_gate.weight", c.ffn_dim, c.dim);
    L.w_up = read_matrix(f, be, p + "ffn_up.weight", c.ffn_dim, c.dim);
    L.w_down = read_matrix(f, be, p + "ffn_down.weight", c.dim, c.ffn_dim);
  }
  w_.out_norm = read_vector(f, be, "output_norm.weight", c.dim);
  if (f.tensor("output.weight")) w_.output_own = read_matrix(f, be, "output.weight", c.n_vocab, c.dim);
  w_.output = w_.output_own ? w_.output_own.get() : w_.tok_embd.get();

  n_ctx_ = n_ctx > 0 ? n_ctx : std::min<int64_t>(c.ctx_train, 4096);
  if (n_ctx_ > limits::kMaxContext) throw EngineError(err::kArgument, "context size is too large");
  max_batch_ = std::min<int64_t>(kMaxBatch, n_ctx_);

  if (n_seq < 1 || n_seq > 256) throw EngineError(err::kArgument, "parallel must be between 1 and 256");
  const int64_t total = kv_cells > 0 ? kv_cells : n_ctx_ * n_seq;
  if (total < n_ctx_)
    throw EngineError(err::kArgument, "a KV cache of " + std::to_string(total) +
                                          " positions cannot hold one full context of " + std::to_string(n_ctx_));
  if (total > INT32_MAX) throw EngineError(err::kArgument, "the KV cache is too large");
  cells_ = KvCells(total, n_seq);

  // KV cache: the backend's, for every sequence at once.
  KvCacheSpec spec;
  spec.n_layers = c.n_layers;
  spec.cells = total;
  spec.kv_dim = kv_dim;
  spec.type = kv_type;
  kv_ = be.make_kv_cache(spec);
  try {
    const int64_t B = max_batch_;
    x_ = be.alloc(B * c.dim);
    xb_ = be.alloc(B * c.dim);
    q_ = be.alloc(B * c.dim);
    k_ = be.alloc(B * kv_dim);
    v_ = be.alloc(B * kv_dim);
    att_ = be.alloc(B * c.dim);
    hb_ = be.alloc(B * c.ffn_dim);
    hb2_ = be.alloc(B * c.ffn_dim);
    logit_rows_ = std::max<int64_t>(std::min(B, kLogitRows), n_seq);
    logits_ = be.alloc(logit_rows_ * c.n_vocab);
    ids_ = be.alloc_ids(B);
  } catch (...) {
    release();
    throw;
  }
}

TextModel::~TextModel() { release(); }

void TextModel::release() {
  for (float** p : {&x_, &xb_, &q_, &k_, &v_, &att_, &hb_, &hb2_, &logits_}) {
    if (*p) be_.free(*p);
    *p = nullptr;
  }
  if (ids_) be_.free_ids(ids_);
  ids_ = nullptr;
}

void TextModel::forward(const int32_t* tokens, const float* embd, int64_t n, int64_t pos0, float* logits,
                        bool all_logits, const std::atomic<bool>* abort) {
  if (n <= 0) throw EngineError(err::kArgument, "forward() needs at least one position");
  if (pos0 < 0 || pos0 + n > n_ctx_ || !cells_.grow(0, pos0 + n))
    throw EngineError(err::kContext, "the sequence needs " + std::to_string(pos0 + n) +
                                         " positions but the context holds " + std::to_string(n_ctx_) +
                                         " (raise contextSize)");
  const LlamaConfig& c = cfg_;
  std::function<bool()> stop;
  if (abort) stop = [abort] { return abort->load(std::memory_order_relaxed); };
  for (int64_t done = 0; done < n; done += max_batch_) {
    const int64_t m = std::min(max_batch_, n - done);
    const bool last = done + m == n;
    SeqInput in;
    in.seq = 0;
    in.pos0 = pos0 + done;
    in.n = m;
    in.tokens = tokens ? tokens + done : nullptr;
    in.embd = embd ? embd + done * c.dim : nullptr;
    in.decode = m == 1 && n == 1;
    if (!all_logits) {
      in.logits = last && logits;
      one_.assign(1, in);
      const float* out = forward_batch(one_, stop);
      if (in.logits) {
        be_.sync();
        be_.to_host(logits, out, c.n_vocab);
      }
      continue;
    }
    // Every position's logits: the layers, then lm_head(norm(x)) a few rows at a time.
    int64_t n_decode = 0;
    one_.assign(1, in);
    load_rows(one_, &rows_, &n_decode);
    run_layers(rows_, n_decode, m, stop);
    be_.rmsnorm(x_, *w_.out_norm, m, c.dim, c.norm_eps, xb_);
    for (int64_t r = 0; r < m; r += kLogitRows) {
      const int64_t k = std::min(kLogitRows, m - r);
      be_.matmul(*w_.output, xb_ + r * c.dim, k, logits_);
      be_.sync();
      be_.to_host(logits + (done + r) * c.n_vocab, logits_, k * c.n_vocab);
    }
  }
}

void TextModel::load_rows(const std::vector<SeqInput>& batch, std::vector<SeqRows>* rows, int64_t* n_decode) {
  const int64_t dim = cfg_.dim;
  int64_t total = 0, dec = 0;
  for (const SeqInput& in : batch) {
    if (in.n <= 0 || (in.decode && in.n != 1) || (!in.tokens && !in.embd && !in.embd_backend))
      throw EngineError(err::kArgument, "forward_batch: an input has no rows, or a decoding step has more than one");
    if (in.seq < 0 || in.seq >= cells_.n_seq() || in.pos0 < 0 || in.pos0 + in.n > cells_.held(in.seq) ||
        in.pos0 + in.n > n_ctx_)
      throw EngineError(err::kContext, "forward_batch: sequence " + std::to_string(in.seq) + " has no cache for positions " +
                                           std::to_string(in.pos0) + ".." + std::to_string(in.pos0 + in.n));
    total += in.n;
    if (in.decode) ++dec;
  }
  if (total > max_batch_)
    throw EngineError(err::kArgument, "forward_batch: " + std::to_string(total) + " rows exceed the batch of " +
                                          std::to_string(max_batch_));
  // Decoding steps take the first rows (the backend streams the weights for
  // them), prompt chunks the rest (panels).
  rows->clear();
  pos_.resize(static_cast<size_t>(total));
  int64_t next_dec = 0, next_prompt = dec;
  for (const SeqInput& in : batch) {
    SeqRows r;
    r.row0 = in.decode ? next_dec++ : next_prompt;
    if (!in.decode) next_prompt += in.n;
    r.n = in.n;
    r.pos0 = in.pos0;
    r.cells = cells_.table(in.seq);
    r.decode = in.decode;
    rows->push_back(r);
    for (int64_t i = 0; i < in.n; ++i) pos_[r.row0 + i] = static_cast<int32_t>(in.pos0 + i);
    // x = embed_tokens(input_ids), or the given embeddings
    if (in.embd_backend) {
      // Backend to backend: an F32 row store is a plain copy.
      be_.store_rows(x_, DType::F32, r.row0, in.embd_backend, in.n, dim);
    } else if (in.embd) {
      be_.from_host(x_ + r.row0 * dim, in.embd, in.n * dim);
    } else {
      be_.ids_from_host(ids_ + r.row0, in.tokens, in.n);
      be_.get_rows(*w_.tok_embd, ids_ + r.row0, in.n, x_ + r.row0 * dim);
    }
  }
  *n_decode = dec;
}

const float* TextModel::forward_batch(const std::vector<SeqInput>& batch, const std::function<bool()>& stop) {
  const LlamaConfig& c = cfg_;
  const int64_t dim = c.dim;
  int64_t n_decode = 0;
  int64_t n = 0;
  for (const SeqInput& in : batch) n += in.n;
  load_rows(batch, &rows_, &n_decode);
  const std::vector<SeqRows>& rows = rows_;
  // A step of decoding only repeats its shape token after token: a backend may
  // record it once and replay it (begin_capture / end_capture).
  struct Capture {
    Backend* be;
    explicit Capture(Backend* b) : be(b) {
      if (be) be->begin_capture();
    }
    ~Capture() {
      if (be) be->end_capture();
    }
  } capture(n_decode == n && be_.captures_decode() ? &be_ : nullptr);
  run_layers(rows, n_decode, n, stop);
  // logits = lm_head(norm(x)) of each input's last row that asks, as decode
  // rows: one stream over the output matrix whatever their number.
  int64_t k = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!batch[i].logits) continue;
    const int64_t last = rows[i].row0 + rows[i].n - 1;
    be_.rmsnorm(x_ + last * dim, *w_.out_norm, 1, dim, c.norm_eps, xb_ + k * dim);
    ++k;
  }
  if (k > 0) be_.matmul_batch(*w_.output, xb_, k, 0, logits_);
  return logits_;
}

void TextModel::run_layers(const std::vector<SeqRows>& rows, int64_t n_decode, int64_t n,
                           const std::function<bool()>& stop) {
  const LlamaConfig& c = cfg_;
  const int64_t dim = c.dim;
  const int64_t n_prompt = n - n_decode;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  Backend& be = be_;

  for (int l = 0; l < c.n_layers; ++l) {
    if (stop && stop()) throw EngineError(err::kAborted, "generation aborted");
    const LlamaLayer& L = w_.layers[l];
    // xb = input_layernorm(x) (from layer 1 on, the previous layer's fused residual step did it)
    if (l == 0) be.rmsnorm(x_, *L.attn_norm, n, dim, c.norm_eps, xb_);
    // q, k, v = q_proj(xb), k_proj(xb), v_proj(xb)
    be.matmul_batch(*L.wq, xb_, n_decode, n_prompt, q_);
    be.matmul_batch(*L.wk, xb_, n_decode, n_prompt, k_);
    be.matmul_batch(*L.wv, xb_, n_decode, n_prompt, v_);
    // apply_rotary_pos_emb (adjacent-pair form; the converter permuted Q/K rows to match)
    be.rope_rows(q_, n, c.n_heads, c.head_dim, pos_.data(), c.rope_base);
    be.rope_rows(k_, n, c.n_kv_heads, c.head_dim, pos_.data(), c.rope_base);
    // past_key_value.update(k, v), each sequence into its own cells
    for (const SeqRows& r : rows) be.kv_store(*kv_, l, k_, v_, r);
    // att = softmax(q kᵀ / sqrt(head_dim) + causal mask) v over each sequence's
    // own positions, KV heads shared by groups of query heads
    be.kv_attention(*kv_, l, q_, att_, rows.data(), static_cast<int>(rows.size()), c.n_heads, c.n_kv_heads,
                    c.head_dim, scale);
    // x = x + o_proj(att); xb = post_attention_layernorm(x)
    be.matmul_batch(*L.wo, att_, n_decode, n_prompt, xb_);
    be.add_rmsnorm(x_, xb_, *L.ffn_norm, n, dim, c.norm_eps, xb_);
    // x = x + down_proj(silu(gate_proj(xb)) * up_proj(xb))
    be.matmul_batch(*L.w_gate, xb_, n_decode, n_prompt, hb_);
    be.matmul_batch(*L.w_up, xb_, n_decode, n_prompt, hb2_);
    be.silu_mul(hb_, hb2_, n * c.ffn_dim);
    be.matmul_batch(*L.w_down, hb_, n_decode, n_prompt, xb_);
    if (l + 1 < c.n_layers) {
      // ...and xb = the next layer's input_layernorm(x), in the same pass
      be.add_rmsnorm(x_, xb_, *w_.layers[l + 1].attn_norm, n, dim, c.norm_eps, xb_);
    } else {
      be.add(x_, xb_, n * dim);
    }
  }
}

}  // namespace cxr
