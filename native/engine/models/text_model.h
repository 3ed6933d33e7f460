// text_model.h - the LLaMA decoder (GGUF architecture "llama") with its KV cache.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "models/kv_cells.h"

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

// Handles to the backend's copies (backend.h): the model holds no weight bytes.
using WeightPtr = std::unique_ptr<Weight>;

struct LlamaLayer {
  WeightPtr attn_norm;           // (dim) vector
  WeightPtr wq;                  // (n_heads * head_dim, dim)
  WeightPtr wk;                  // (n_kv_heads * head_dim, dim)
  WeightPtr wv;                  // (n_kv_heads * head_dim, dim)
  WeightPtr wo;                  // (dim, n_heads * head_dim)
  WeightPtr ffn_norm;            // (dim) vector
  WeightPtr w_gate;              // (ffn_dim, dim)
  WeightPtr w_up;                // (ffn_dim, dim)
  WeightPtr w_down;              // (dim, ffn_dim)
};

struct LlamaWeights {
  WeightPtr tok_embd;            // (n_vocab, dim), rows for get_rows
  std::vector<LlamaLayer> layers;
  WeightPtr out_norm;            // (dim) vector
  WeightPtr output_own;          // (n_vocab, dim) output.weight, when the file has one
  const Weight* output = nullptr;  // output_own, or tok_embd when the file ties them
};

// Reads hyperparameters from llama.* keys, with the model's own file named in errors.
LlamaConfig read_llama_config(const GgufFile& f);

// One sequence's rows in a batched forward pass (forward_batch).
struct SeqInput {
  int seq = 0;                     // which sequence: its KV cells
  int64_t pos0 = 0;                // position of the first row
  int64_t n = 0;                   // rows
  const int32_t* tokens = nullptr; // n token ids (host), or
  const float* embd = nullptr;     // n input embeddings [n, dim] (host), or
  const float* embd_backend = nullptr;  // the same in backend memory (an encoded image kept in the engine)
  bool decode = false;             // a decoding step: n == 1, the token just sampled
  bool logits = false;             // wants the logits of its last row
};

class TextModel {
 public:
  // n_ctx: the most positions one sequence holds (0: min(ctx_train, 4096)).
  // kv_type: F16 or F32. n_seq sequences share a KV cache of kv_cells
  // positions (0: n_ctx * n_seq).
  TextModel(const GgufFile& f, Backend& be, int64_t n_ctx, DType kv_type, int n_seq = 1, int64_t kv_cells = 0);
  ~TextModel();
  TextModel(const TextModel&) = delete;
  TextModel& operator=(const TextModel&) = delete;

  const LlamaConfig& config() const { return cfg_; }
  int64_t n_ctx() const { return n_ctx_; }
  int n_seq() const { return cells_.n_seq(); }
  size_t kv_bytes() const { return kv_->bytes(); }
  int64_t max_batch() const { return max_batch_; }
  // Which cache cells each sequence holds; the scheduler grows and shrinks them.
  KvCells& cells() { return cells_; }
  const KvCells& cells() const { return cells_; }

  // Runs rows of several sequences through the model in one pass: every
  // weight is read once for all of them. Each input's cells must already hold
  // positions 0 .. pos0 + n (cells().grow); its rows are stored in them and
  // attend causally to its own positions only. Decoding steps and prompt
  // chunks may be mixed; a row's result is the same whatever else is in the
  // batch. At most max_batch() rows. Returns backend memory with the logits
  // ([k, n_vocab]) of the last row of each input that asked, in input order.
  // Throws EngineError(kAborted) when `stop` (if given) returns true; it is asked between layers.
  const float* forward_batch(const std::vector<SeqInput>& batch, const std::function<bool()>& stop = {});

  // Sequence 0 alone: feeds n positions starting at pos0 into the cache: either token ids or,
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
  void release();  // frees the scratch; safe to call twice
  // Fills x_ with the inputs' rows (decoding steps first) and describes them.
  void load_rows(const std::vector<SeqInput>& batch, std::vector<SeqRows>* rows, int64_t* n_decode);
  // The decoder layers over the rows in x_; leaves the final hidden states in x_.
  void run_layers(const std::vector<SeqRows>& rows, int64_t n_decode, int64_t n, const std::function<bool()>& stop);

  LlamaConfig cfg_;
  Backend& be_;
  LlamaWeights w_;
  int64_t n_ctx_ = 0;
  int64_t max_batch_ = 0;
  DType kv_type_;
  std::unique_ptr<KvCache> kv_;
  KvCells cells_;
  // Scratch activations for up to max_batch_ rows (logits_: up to max(kLogitRows, n_seq) rows).
  float *x_ = nullptr, *xb_ = nullptr, *q_ = nullptr, *k_ = nullptr, *v_ = nullptr, *att_ = nullptr,
        *hb_ = nullptr, *hb2_ = nullptr, *logits_ = nullptr;
  int32_t* ids_ = nullptr;        // token ids of the rows, backend memory
  int64_t logit_rows_ = 0;
  // Host memory on purpose (backend.h: rope_rows, SeqRows): the position of
  // each row and the rows' description, rebuilt each step in place.
  std::vector<int32_t> pos_;
  std::vector<SeqRows> rows_;
  std::vector<SeqInput> one_;     // forward()'s single input, kept so a step allocates nothing
};

}  // namespace cxr
