// backend.h - the seam between the models and the hardware that runs them.
//
// The text model and the vision tower are written against this interface only:
// they own no kernels. The CPU backend (backend_cpu.cpp) implements it today; a
// CUDA or Metal backend implements the same table later and is checked against
// the CPU backend op by op.
//
// Activations are plain float arrays in row-major [n, width] layout, allocated
// by the backend (host memory for the CPU, device memory elsewhere): a model
// never reads them directly, except through to_host().
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "types/dtype.h"

namespace cxr {

struct GgufTensor;

// A tensor as the file holds it, seen as a [rows, cols] matrix (cols
// contiguous; ggml ne = {cols, rows}): what a model hands the backend to make
// a weight of. `data` is host memory: for matrices it must outlive the Weight
// (the CPU wraps it, e.g. the file's mapping); vectors are copied at upload.
struct TensorView {
  std::string name;  // for errors
  DType type = DType::F32;
  int64_t rows = 0, cols = 0;
  const void* data = nullptr;
  // data lies in a read-only file mapping: a backend that copies it may drop
  // its pages from memory (the OS reads them back if they are touched again).
  bool file_mapped = false;
};

// The view of a GGUF tensor (file_mapped): rows = ne[1] * ne[2] * ne[3], cols = ne[0].
TensorView tensor_view(const GgufTensor& t);

// What a weight is uploaded for; the backend picks the layout that use wants.
enum class WeightUse : uint8_t {
  Matmul,       // a matrix read only by matmul, for decoding steps and prompts: the
                // backend may rearrange it (CPU: Q4_0 / Q8_0 into x8, repack.h)
  MatmulBatch,  // a matrix read only by matmul, and only in whole batches (the vision
                // tower): the CPU keeps the file's rows, as the repack's load time is
                // repaid by decoding only
  Rows,         // an embedding table: get_rows reads it, and matmul too (an output
                // head tied to it); kept as rows
  Vector,       // a small tensor read elementwise (norm weights, biases, position
                // embeddings): converted to F32 and copied to backend memory once
};

// A weight in backend memory, made by Backend::upload. Its shape is public;
// where its bytes live and how they are laid out is the business of the
// backend that made it, and only that backend's ops may be given it. It must
// not outlive that backend.
class Weight {
 public:
  virtual ~Weight() = default;
  Weight(const Weight&) = delete;
  Weight& operator=(const Weight&) = delete;
  const std::string name;
  const DType type;  // the file's type; F32 for Vector weights, whatever the file held
  const int64_t rows, cols;
  const WeightUse use;

 protected:
  Weight(const TensorView& t, WeightUse u) : name(t.name), type(t.type), rows(t.rows), cols(t.cols), use(u) {}
};

// The ops of the seam, for Backend::supports.
enum class Op : uint8_t {
  Matmul, GetRows,                  // type: the weight's
  StoreRows, Attention, KvCache,    // type: the stored keys and values' (F16 or F32)
  Rmsnorm, Layernorm, Rope, SiluMul, Gelu, Add, AddBroadcast, Im2col, Argmax, TopK,  // type: F32
};
const char* op_name(Op op);

// Attention over a KV cache. K and V for position p of layer l are rows of
// [n_ctx, kv_dim] matrices in `kv_type` (F32 or F16), or, with `cells`, rows
// cells[p] of such matrices (a sequence's positions scattered over a shared cache).
struct AttentionArgs {
  const float* q;     // [n, n_heads * head_dim]
  const void* k;      // [n_kv, n_kv_heads * head_dim], kv_type
  const void* v;      // [n_kv, n_kv_heads * head_dim], kv_type
  DType kv_type;
  float* out;         // [n, n_heads * head_dim]
  int64_t n;          // query rows
  int64_t n_kv;       // key rows visible to the last query
  int64_t pos0;       // position of query row 0 (causal: row i sees keys 0..pos0+i)
  int n_heads, n_kv_heads, head_dim;
  bool causal;
  float scale;        // usually 1/sqrt(head_dim)
  // Host memory: the cache row of each key position (null: row = position).
  // The table changes only when a sequence grows; a device backend copies the
  // n_kv ints it needs with the launch (CUDA: one small async copy per step).
  const int32_t* cells = nullptr;
  // One query row that is a decoding step; a single prompt row takes the prompt
  // route, so a row's result never depends on how a prompt was cut into chunks.
  bool decode = true;
};

// A KV cache for several sequences, made by and private to a backend, which
// picks its layout. It holds `cells` positions per layer, shared by the
// sequences; which cells a sequence uses is the model's business (KvCells).
struct KvCacheSpec {
  int n_layers = 0;
  int64_t cells = 0;   // positions, all sequences together
  int64_t kv_dim = 0;  // n_kv_heads * head_dim
  DType type = DType::F16;
};

class KvCache {
 public:
  virtual ~KvCache() = default;
  virtual const KvCacheSpec& spec() const = 0;
  virtual size_t bytes() const = 0;
};

// Rows of one sequence in a batched forward pass: rows row0 .. row0 + n of the
// batch are its positions pos0 .. pos0 + n, which live in cache rows
// cells[pos0 ..] (host memory, one entry per position of the sequence: the
// model's KvCells table, which a device backend copies per step as
// AttentionArgs::cells says).
struct SeqRows {
  int64_t row0 = 0, n = 0, pos0 = 0;
  const int32_t* cells = nullptr;
  bool decode = false;  // a decoding step (n == 1) rather than prompt rows
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual int threads() const = 0;

  // --- memory ---------------------------------------------------------------
  virtual float* alloc(size_t n_floats) = 0;               // zero-initialised
  virtual void free(float* p) = 0;
  virtual void* alloc_bytes(size_t n_bytes) = 0;           // for KV caches
  virtual void free_bytes(void* p) = 0;
  virtual void to_host(float* dst, const float* src, size_t n) = 0;
  virtual void from_host(float* dst, const float* src, size_t n) = 0;

  // --- weights ----------------------------------------------------------------
  // Whether this backend runs `op` on `type` (see Op for which type an op is
  // asked about). upload() asks before it makes a matrix.
  virtual bool supports(Op op, DType type) const = 0;
  // A weight made from `t` for `use`. Throws EngineError(kModel) naming the
  // tensor, its type and this backend when the backend does not run the ops
  // that use needs (matmul; get_rows and matmul for Rows) on t's type.
  std::unique_ptr<Weight> upload(const TensorView& t, WeightUse use);

  // --- ops (every pointer is backend memory unless said otherwise) -----------
  // y[n, W.rows] = x[n, W.cols] · Wᵀ (+ bias[W.rows], a Vector weight, if given)
  virtual void matmul(const Weight& W, const float* x, int64_t n, float* y, const Weight* bias = nullptr) = 0;
  // The same for a batch of several sequences: the first n_decode rows are
  // decoding steps, the other n_prompt rows prompt chunks. A row's result
  // depends only on the row and its kind, never on what else is in the batch,
  // so a sequence gets the same numbers alone or batched. Decode rows share
  // one read of the weights (decoding is bound by that read).
  virtual void matmul_batch(const Weight& W, const float* x, int64_t n_decode, int64_t n_prompt, float* y);
  // Token ids in backend memory, for get_rows and the sampling ops (the
  // defaults keep them in host memory, which get_rows then reads).
  virtual int32_t* alloc_ids(size_t n);
  virtual void free_ids(int32_t* p);
  virtual void ids_from_host(int32_t* dst, const int32_t* src, size_t n);
  virtual void ids_to_host(int32_t* dst, const int32_t* src, size_t n);
  // out[i, :] = row ids[i] of the embedding matrix E, dequantized. ids are backend memory.
  virtual void get_rows(const Weight& E, const int32_t* ids, int64_t n, float* out) = 0;
  // Sampling without the logits leaving the backend. ids[r] = the index of
  // row r's largest value (the lowest on ties, NaN as -inf), for n rows of width.
  virtual void argmax(const float* x, int64_t n, int64_t width, int32_t* ids);
  // The k largest values of each row, best first (ties: lower index first),
  // into vals[r * k ..] and ids[r * k ..] (backend memory).
  virtual void top_k(const float* x, int64_t n, int64_t width, int k, float* vals, int32_t* ids);
  // out = x / sqrt(mean(x²) + eps) * w, row by row; w a Vector weight of dim values.
  virtual void rmsnorm(const float* x, const Weight& w, int64_t n, int64_t dim, float eps, float* out) = 0;
  // out = (x - mean) / sqrt(var + eps) * w + b, row by row; w, b Vector weights.
  virtual void layernorm(const float* x, const Weight& w, const Weight& b, int64_t n, int64_t dim, float eps,
                         float* out) = 0;
  // In place, adjacent pairs (x[2i], x[2i+1]) rotated by pos * theta^(-2i/head_dim),
  // for row r at position pos0 + r. x is [n, n_heads * head_dim].
  virtual void rope(float* x, int64_t n, int n_heads, int head_dim, int64_t pos0, float theta) = 0;
  // The same with row r at position pos[r]. pos is host memory: it changes
  // every step, and a device backend copies these n ints with the launch
  // (CUDA: one small async copy) rather than asking the model to.
  virtual void rope_rows(float* x, int64_t n, int n_heads, int head_dim, const int32_t* pos, float theta);
  // Copies n rows of width `width` from src into dst (of type `type`) starting at row `row0`.
  virtual void store_rows(void* dst, DType type, int64_t row0, const float* src, int64_t n,
                          int64_t width) = 0;
  virtual void attention(const AttentionArgs& a) = 0;

  // --- the KV cache -----------------------------------------------------------
  // The defaults (backend/batch_defaults.cpp) build these and the batching ops
  // above from the older ops, for a backend that has no kernels of its own for
  // them yet: correct, but each row kind is not kept apart in matmul_batch, and
  // kv_attention needs each sequence's cells to be one consecutive run.
  virtual std::unique_ptr<KvCache> make_kv_cache(const KvCacheSpec& spec);
  // Stores rows s.row0 .. of k and v ([rows, kv_dim]) as layer `layer`'s keys
  // and values of positions s.pos0 .. of that sequence.
  virtual void kv_store(KvCache& c, int layer, const float* k, const float* v, const SeqRows& s);
  // out = causal attention of q ([rows, n_heads * head_dim]) over each
  // sequence's cached positions 0 .. pos0 + n, for every SeqRows given.
  virtual void kv_attention(const KvCache& c, int layer, const float* q, float* out, const SeqRows* seqs, int n_seqs,
                            int n_heads, int n_kv_heads, int head_dim, float scale);
  // gate[i] = silu(gate[i]) * up[i]
  virtual void silu_mul(float* gate, const float* up, int64_t count) = 0;
  // x[i] = gelu(x[i]) with the exact erf form
  virtual void gelu(float* x, int64_t count) = 0;
  // x[i] += y[i]
  virtual void add(float* x, const float* y, int64_t count) = 0;
  // out[r, :] = x[r, :] + w[r % w.rows, :] for n rows of w.cols values, w a
  // Vector weight (class and position embeddings); without x, out[r, :] = w[r % w.rows, :].
  virtual void add_broadcast(float* out, const float* x, const Weight& w, int64_t n) = 0;
  // The patches of an image as rows: pixels [channels, size, size] ->
  // out[(size / patch)², channels * patch * patch], patches in row-major order,
  // each in (channel, y, x) order, so a conv with stride = kernel = patch is one matmul.
  virtual void im2col(const float* pixels, int channels, int64_t size, int patch, float* out) = 0;
  // Fused residual step: x += y, then out = rmsnorm(x) as above (x keeps the sum).
  // out may be y (rows are summed before they are normalised). One pass over x
  // instead of two and one parallel step less; optional, the default runs add then rmsnorm.
  virtual void add_rmsnorm(float* x, const float* y, const Weight& w, int64_t n, int64_t dim, float eps,
                           float* out) {
    add(x, y, n * dim);
    rmsnorm(x, w, n, dim, eps, out);
  }
  // Fused residual step: x += y, then out = layernorm(x) as above (x keeps the sum).
  // out may be y. Optional, the default runs add then layernorm.
  virtual void add_layernorm(float* x, const float* y, const Weight& w, const Weight& b, int64_t n, int64_t dim,
                             float eps, float* out) {
    add(x, y, n * dim);
    layernorm(x, w, b, n, dim, eps, out);
  }
  // Blocks until queued work is done (no-op for the CPU).
  virtual void sync() = 0;
  // Around a step of decoding only, whose shape repeats token after token: a
  // backend that returns true from captures_decode() records the step's ops
  // between the two calls (to replay them as one graph later) and must have
  // run them by the time end_capture() returns. Others are never called (the
  // CPU: no-ops).
  virtual bool captures_decode() const { return false; }
  virtual void begin_capture() {}
  virtual void end_capture() {}

 protected:
  // upload()'s work once the type is known to be supported. For Vector uses t
  // is already F32 (upload converts it with the types/ reference converters)
  // and its data lives only for the call.
  virtual std::unique_ptr<Weight> make_weight(const TensorView& t, WeightUse use) = 0;
};

// The types every op takes in the engine's formats (weights: F32, F16, BF16,
// Q8_0, Q4_0, Q4_K, Q6_K; caches and stored rows: F32, F16; everything else F32).
// A backend that runs them all answers supports() with it.
bool supports_engine_types(Op op, DType type);

// The backend called `name` ("cpu"; others where they were built in), with
// `threads` host threads (0: a sensible default). Throws EngineError(kArgument)
// naming the backends this build has when `name` is not one of them.
std::unique_ptr<Backend> make_backend(const std::string& name, int threads);

// The names make_backend() accepts in this build, in order of preference.
std::vector<std::string> backend_names();

// A backend picked by name, and why, in a sentence for model.info:
//   "cpu"   the CPU backend;
//   "cuda"  CUDA device `device`; throws EngineError(kBackend) saying why not
//           (this build has none, no driver, no device, compute capability < 8.0);
//   "auto"  CUDA when this build has it and device `device` is usable, else the CPU.
struct BackendChoice {
  std::unique_ptr<Backend> backend;
  std::string reason;
};
BackendChoice choose_backend(const std::string& name, int threads, int device);

// The CPU backend with `threads` threads (0: a sensible default).
std::unique_ptr<Backend> make_cpu_backend(int threads);

}  // namespace cxr
