// backend_cuda.cu - the CUDA implementation of backend.h: device selection
// and its errors, device memory, weights uploaded once, and the dispatch of
// every op to its kernel family (kernels.h).
//
// Everything runs on one stream, in order, so no op waits for another on the
// host; only to_host() and sync() block. Weights are copied from the file's
// mapping to the device once, at load, through two pinned staging buffers so
// the disk read of one chunk overlaps the PCIe copy of the one before.
// Vector weights (norm weights, biases, position embeddings) are uploaded as
// F32 with the model, like the matrices: every pointer an op takes is device memory.
#include <cuda_runtime.h>
#if defined(__linux__)
#include <dlfcn.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/kernels.h"
#include "format/gguf.h"
#include "types/error.h"

namespace cxr {

bool cuda_usable(int device, std::string* what);  // below; also offered to backend.cpp
bool cuda_built() { return true; }

namespace {

constexpr int kMinMajor = 8;                     // compute capability 8.0: mma.sync int8/f16, cp.async, bf16
constexpr size_t kStagingBytes = size_t{64} << 20;

std::string mib(size_t bytes) { return std::to_string((bytes + (size_t{1} << 19)) >> 20) + " MiB"; }

// Turns a failed runtime call into the sentence a user can act on.
[[noreturn]] void fail(cudaError_t e, const std::string& what) {
  throw EngineError(err::kBackend, "CUDA: " + what + " failed: " + cudaGetErrorString(e) + " (" +
                                       cudaGetErrorName(e) + ")");
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail(e, what);
}

// Whether the driver's library is installed at all: the runtime reports a
// missing driver and an old one with the same error.
bool driver_installed() {
#if defined(__linux__)
  void* h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (!h) return false;
  dlclose(h);
#endif
  return true;
}

std::string no_driver_reason(cudaError_t e) {
  switch (e) {
    case cudaErrorNoDevice: return "no CUDA device found (the NVIDIA driver sees no GPU)";
    case cudaErrorInsufficientDriver:
      if (!driver_installed()) return "no NVIDIA driver is installed (libcuda.so.1 not found)";
      return "the NVIDIA driver is older than this build's CUDA runtime needs: update the driver";
    case cudaErrorInitializationError:
    case cudaErrorNotPermitted:
    case cudaErrorSystemDriverMismatch:
      return std::string("the NVIDIA driver could not be initialised: ") + cudaGetErrorString(e);
    default: return std::string("no usable NVIDIA driver: ") + cudaGetErrorString(e);
  }
}

// The CUDA backend's Weight: a device copy. Matrices from a file mapping are
// shared by every Weight made from the same bytes (a tied output head) and
// freed with the backend; vectors and other matrices own their copy.
struct CudaWeight final : Weight {
  CudaWeight(const TensorView& t, WeightUse u, const void* d, void* owned) : Weight(t, u), device(d), own(owned) {}
  ~CudaWeight() override {
    if (own) cudaFree(own);  // waits for kernels that may still read it
  }
  const void* device;
  void* own;
  const float* f32() const { return static_cast<const float*>(device); }
};

const CudaWeight& cuda_weight(const Weight& w) { return static_cast<const CudaWeight&>(w); }

}  // namespace

// Named (not in the anonymous namespace): its capture calls wait for the
// seam's capture hook, and stay compiled meanwhile.
class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : dev_(device) {
    std::string why;
    if (!cuda_usable(device, &why)) throw EngineError(err::kBackend, "CUDA backend: " + why);
    check(cudaSetDevice(dev_), "cudaSetDevice");
    check(cudaGetDeviceProperties(&prop_, dev_), "cudaGetDeviceProperties");
    check(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), "cudaStreamCreate");
    for (int i = 0; i < 2; ++i) {
      check(cudaMallocHost(reinterpret_cast<void**>(&staging_[i]), kStagingBytes), "cudaMallocHost (staging buffers)");
      check(cudaEventCreateWithFlags(&staged_[i], cudaEventDisableTiming), "cudaEventCreate");
    }
  }

  ~CudaBackend() override {
    cudaStreamSynchronize(s_);
    if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
    for (auto& kv : weights_) cudaFree(kv.second);
    for (auto& kv : inv_freq_) cudaFree(kv.second);
    for (void* p : {static_cast<void*>(a8_), att_scratch_, static_cast<void*>(ids_)}) cudaFree(p);
    for (auto& b : ints_) cudaFree(b.first);
    if (ids_host_) cudaFreeHost(ids_host_);
    for (int i = 0; i < 2; ++i) {
      cudaFreeHost(staging_[i]);
      cudaEventDestroy(staged_[i]);
    }
    cudaStreamDestroy(s_);
  }

  const char* name() const override { return "cuda"; }
  int threads() const override { return 1; }

  // --- memory ---------------------------------------------------------------
  float* alloc(size_t n) override { return static_cast<float*>(alloc_bytes(n * sizeof(float))); }
  void free(float* p) override { free_bytes(p); }
  void* alloc_bytes(size_t n) override {
    void* p = device_alloc(n, "a buffer");
    check(cudaMemsetAsync(p, 0, n, s_), "cudaMemset");
    return p;
  }
  void free_bytes(void* p) override {
    if (!p) return;
    cudaStreamSynchronize(s_);  // kernels in flight may still read it
    cudaFree(p);
  }
  void to_host(float* dst, const float* src, size_t n) override {
    check(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToHost, s_), "copy to the host");
    check(cudaStreamSynchronize(s_), "a kernel (reported at copy to the host)");
  }
  void from_host(float* dst, const float* src, size_t n) override {
    // Synchronous with respect to `src`: the caller may reuse it at once.
    check(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyHostToDevice, s_), "copy from the host");
    check(cudaStreamSynchronize(s_), "copy from the host");
  }

  bool supports(Op op, DType type) const override {
    return supports_engine_types(op, type);
  }

  // --- ops --------------------------------------------------------------------
  void matmul(const Weight& W, const float* x, int64_t n, float* y, const Weight* bias) override {
    cuda::block_a8* a8 = nullptr;
    if (W.type != DType::F32 && W.type != DType::F16 && W.type != DType::BF16)
      a8 = a8_space(static_cast<size_t>(n * W.cols / cuda::kA8));
    cuda::matmul(s_, W.type, matrix(W), W.rows, W.cols, x, n, y, bias ? vector(*bias, W.rows) : nullptr, a8);
    launched("matmul");
  }

  void get_rows(const Weight& E, const int32_t* ids, int64_t n, float* out) override {
    for (int64_t i = 0; i < n; ++i)
      if (ids[i] < 0 || ids[i] >= E.rows)
        throw EngineError(err::kArgument, "token id " + std::to_string(ids[i]) + " is outside the vocabulary");
    int32_t* dev = ids_space(static_cast<size_t>(n));
    // The pinned copy is reused by the next call: the copy must land first.
    check(cudaStreamSynchronize(s_), "get_rows");
    std::memcpy(ids_host_, ids, n * sizeof(int32_t));
    check(cudaMemcpyAsync(dev, ids_host_, n * sizeof(int32_t), cudaMemcpyHostToDevice, s_), "copy of token ids");
    cuda::get_rows(s_, E.type, matrix(E), E.cols, dev, n, out);
    launched("get_rows");
  }

  void rmsnorm(const float* x, const Weight& w, int64_t n, int64_t dim, float eps, float* out) override {
    cuda::rmsnorm(s_, const_cast<float*>(x), nullptr, vector(w, dim), n, dim, eps, out);
    launched("rmsnorm");
  }
  void add_rmsnorm(float* x, const float* y, const Weight& w, int64_t n, int64_t dim, float eps, float* out) override {
    cuda::rmsnorm(s_, x, y, vector(w, dim), n, dim, eps, out);
    launched("add_rmsnorm");
  }
  void layernorm(const float* x, const Weight& w, const Weight& b, int64_t n, int64_t dim, float eps,
                 float* out) override {
    cuda::layernorm(s_, const_cast<float*>(x), nullptr, vector(w, dim), vector(b, dim), n, dim, eps, out);
    launched("layernorm");
  }
  void add_layernorm(float* x, const float* y, const Weight& w, const Weight& b, int64_t n, int64_t dim, float eps,
                     float* out) override {
    cuda::layernorm(s_, x, y, vector(w, dim), vector(b, dim), n, dim, eps, out);
    launched("add_layernorm");
  }

  void rope(float* x, int64_t n, int n_heads, int head_dim, int64_t pos0, float theta) override {
    cuda::rope(s_, x, n, n_heads, head_dim, pos0, inv_freq(head_dim, theta));
    launched("rope");
  }

  void store_rows(void* dst, DType type, int64_t row0, const float* src, int64_t n, int64_t width) override {
    if (type == DType::F32) {
      check(cudaMemcpyAsync(static_cast<float*>(dst) + row0 * width, src, n * width * sizeof(float),
                            cudaMemcpyDeviceToDevice, s_),
            "store_rows");
      return;
    }
    if (type != DType::F16) throw EngineError(err::kBackend, "the CUDA backend stores KV rows as f16 or f32 only");
    cuda::to_f16(s_, src, static_cast<uint16_t*>(dst) + row0 * width, n * width);
    launched("store_rows");
  }

  void attention(const AttentionArgs& a) override { attention_with_cells(a, nullptr); }

  void attention_with_cells(const AttentionArgs& a, const int32_t* cells) {
    if (a.head_dim > cuda::kMaxHeadDim || a.n_heads % a.n_kv_heads != 0)
      throw EngineError(err::kBackend, "the CUDA attention kernels take head_dim <= " +
                                           std::to_string(cuda::kMaxHeadDim) + " (got " + std::to_string(a.head_dim) + ")");
    if (a.kv_type != DType::F16 && a.kv_type != DType::F32)
      throw EngineError(err::kBackend, "the CUDA backend reads KV caches in f16 or f32 only");
    cuda::AttentionLaunch l{a.q, a.k, a.v, a.kv_type == DType::F16, a.out, a.n, a.n_kv, a.pos0,
                            a.n_heads, a.n_kv_heads, a.head_dim, a.causal, a.scale, cells};
    const size_t need = cuda::attention_scratch_bytes(a.n, a.n_heads, a.head_dim, a.n_kv);
    if (need > att_cap_) {
      free_bytes(att_scratch_);
      att_scratch_ = nullptr;
      att_scratch_ = device_alloc(need, "attention partials");
      att_cap_ = need;
    }
    cuda::attention(s_, l, att_scratch_);
    launched("attention");
  }

  void silu_mul(float* gate, const float* up, int64_t count) override {
    cuda::silu_mul(s_, gate, up, count);
    launched("silu_mul");
  }
  void gelu(float* x, int64_t count) override {
    cuda::gelu(s_, x, count);
    launched("gelu");
  }
  void add(float* x, const float* y, int64_t count) override {
    cuda::add(s_, x, y, count);
    launched("add");
  }

  void add_broadcast(float* out, const float* x, const Weight& w, int64_t n) override {
    cuda::add_broadcast(s_, out, x, vector(w, w.cols), w.rows, w.cols, n);
    launched("add_broadcast");
  }
  void im2col(const float* pixels, int channels, int64_t size, int patch, float* out) override {
    cuda::im2col(s_, pixels, channels, size, patch, out);
    launched("im2col");
  }

  void sync() override { check(cudaStreamSynchronize(s_), "a kernel (reported at sync)"); }

  // --- several sequences at once, on the device (not wired yet) -----------------
  // Named apart from the seam's batching ops, whose defaults (host token ids,
  // one sequence's cells at a time) the backend uses for now: these keep ids
  // on the device, and get_rows must read device ids before they can replace
  // the defaults together; that waits for a run on a GPU.
  // Decode rows go through the GEMV in groups of kGemvRows (each weight byte
  // read once per group), prompt rows through the tensor-core path: a row's
  // result depends on its kind only, never on the rest of the batch.
  void device_matmul_batch(const Weight& W, const float* x, int64_t n_decode, int64_t n_prompt, float* y) {
    const void* Wd = matrix(W);
    const bool quant = W.type != DType::F32 && W.type != DType::F16 && W.type != DType::BF16;
    cuda::block_a8* a8 = quant ? a8_space(static_cast<size_t>(std::max<int64_t>(n_decode, n_prompt) * W.cols / cuda::kA8)) : nullptr;
    for (int64_t r = 0; r < n_decode; r += cuda::kGemvRows) {
      const int64_t m = std::min<int64_t>(cuda::kGemvRows, n_decode - r);
      cuda::matmul(s_, W.type, Wd, W.rows, W.cols, x + r * W.cols, m, y + r * W.rows, nullptr, a8);
    }
    if (n_prompt > 0)
      cuda::matmul(s_, W.type, Wd, W.rows, W.cols, x + n_decode * W.cols, n_prompt, y + n_decode * W.rows,
                   nullptr, a8, /*tiles=*/true);
    launched("matmul_batch");
  }

  int32_t* device_alloc_ids(size_t n) { return static_cast<int32_t*>(device_alloc(n * sizeof(int32_t), "token ids")); }
  void device_free_ids(int32_t* p) { free_bytes(p); }
  void device_ids_from_host(int32_t* dst, const int32_t* src, size_t n) {
    check(cudaMemcpyAsync(dst, src, n * sizeof(int32_t), cudaMemcpyHostToDevice, s_), "copy of token ids");
    check(cudaStreamSynchronize(s_), "copy of token ids");
  }
  void device_ids_to_host(int32_t* dst, const int32_t* src, size_t n) {
    check(cudaMemcpyAsync(dst, src, n * sizeof(int32_t), cudaMemcpyDeviceToHost, s_), "copy of token ids");
    check(cudaStreamSynchronize(s_), "a kernel (reported at copy of token ids)");
  }

  void device_argmax(const float* x, int64_t n, int64_t width, int32_t* ids) {
    cuda::argmax_rows(s_, x, n, width, ids);
    launched("argmax");
  }
  void device_top_k(const float* x, int64_t n, int64_t width, int k, float* vals, int32_t* ids) {
    if (k < 1 || k > cuda::kMaxTopK || k > width)
      throw EngineError(err::kArgument, "the CUDA top-k takes 1 <= k <= " + std::to_string(cuda::kMaxTopK) + " (got " +
                                            std::to_string(k) + ")");
    cuda::top_k_rows(s_, x, n, width, k, vals, ids);
    launched("top_k");
  }

  void device_rope_rows(float* x, int64_t n, int n_heads, int head_dim, const int32_t* pos, float theta) {
    cuda::rope(s_, x, n, n_heads, head_dim, 0, inv_freq(head_dim, theta), ints_to_device(pos, static_cast<size_t>(n), 0));
    launched("rope_rows");
  }

  // A KV cache of spec.cells positions per layer, shared by the sequences.
  struct KvBuffers {
    int64_t cells = 0, kv_dim = 0;
    bool f16 = true;
    std::vector<void*> k, v;
  };
  KvBuffers* make_kv_buffers(int n_layers, int64_t cells, int64_t kv_dim, DType type) {
    auto* c = new KvBuffers;
    c->cells = cells;
    c->kv_dim = kv_dim;
    c->f16 = type == DType::F16;
    const size_t bytes = static_cast<size_t>(cells) * kv_dim * (c->f16 ? 2 : 4);
    try {
      for (int l = 0; l < n_layers; ++l) {
        c->k.push_back(alloc_bytes(bytes));
        c->v.push_back(alloc_bytes(bytes));
      }
    } catch (...) {
      free_kv_buffers(c);
      throw;
    }
    return c;
  }
  void free_kv_buffers(KvBuffers* c) {
    for (void* p : c->k) free_bytes(p);
    for (void* p : c->v) free_bytes(p);
    delete c;
  }
  // Rows row0 .. row0 + n of k and v into the cache rows cells[pos0 ..] of `layer`.
  void kv_store_rows(KvBuffers& c, int layer, const float* k, const float* v, int64_t row0, int64_t n, int64_t pos0,
                     const int32_t* cells) {
    const int32_t* rows = ints_to_device(cells + pos0, static_cast<size_t>(n), 0);
    cuda::scatter_rows(s_, k + row0 * c.kv_dim, c.k[layer], c.f16, rows, n, c.kv_dim);
    cuda::scatter_rows(s_, v + row0 * c.kv_dim, c.v[layer], c.f16, rows, n, c.kv_dim);
    launched("kv_store");
  }
  // Causal attention of one sequence's rows over its cached positions 0 .. pos0 + n.
  void kv_attention_rows(const KvBuffers& c, int layer, const float* q, float* out, int64_t row0, int64_t n, int64_t pos0,
                         const int32_t* cells, int n_heads, int n_kv_heads, int head_dim, float scale, int slot) {
    const int64_t width = static_cast<int64_t>(n_heads) * head_dim;
    AttentionArgs a{q + row0 * width, c.k[layer], c.v[layer], c.f16 ? DType::F16 : DType::F32, out + row0 * width,
                    n, pos0 + n, pos0, n_heads, n_kv_heads, head_dim, true, scale};
    attention_with_cells(a, ints_to_device(cells, static_cast<size_t>(pos0 + n), 1 + slot));
  }

  // --- decode-step capture (CUDA graphs) ------------------------------------------
  // Not yet the seam's begin_capture/end_capture (which must have run the ops
  // when end_capture returns, and around which ops still synchronise and copy
  // from pageable memory): those keep their no-op defaults until a GPU run.
  // Between begin and end every op is recorded instead of run; replay() runs
  // the recorded step again with one launch. The step must not allocate or
  // read host memory that changes (token ids must already be on the device).
  void graph_begin() {
    check(cudaStreamBeginCapture(s_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  }
  void graph_end() {
    cudaGraph_t g = nullptr;
    check(cudaStreamEndCapture(s_, &g), "cudaStreamEndCapture");
    if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
    graph_exec_ = nullptr;
    const cudaError_t e = cudaGraphInstantiate(&graph_exec_, g, 0);
    cudaGraphDestroy(g);
    check(e, "cudaGraphInstantiate");
  }
  void graph_replay() {
    if (!graph_exec_) throw EngineError(err::kArgument, "no decode step has been captured");
    check(cudaGraphLaunch(graph_exec_, s_), "cudaGraphLaunch");
  }

 protected:
  // Matrices go to the device once per file tensor (a tied output head shares
  // the embedding's copy); vectors arrive as F32 and get a copy of their own.
  std::unique_ptr<Weight> make_weight(const TensorView& t, WeightUse use) override {
    if (use == WeightUse::Vector) {
      const size_t bytes = static_cast<size_t>(t.rows * t.cols) * sizeof(float);
      void* d = device_alloc(bytes, "vector " + t.name);
      const cudaError_t e = cudaMemcpy(d, t.data, bytes, cudaMemcpyHostToDevice);  // t.data lives only for the call
      if (e != cudaSuccess) {
        cudaFree(d);
        fail(e, "upload of " + t.name);
      }
      return std::make_unique<CudaWeight>(t, use, d, d);
    }
    if (!cuda::matmul_supports(t.type, t.cols))
      throw EngineError(err::kModel, "the cuda backend does not support tensor " + t.name + " of type " +
                                         dtype_name(t.type) + " with rows of " + std::to_string(t.cols));
    // Only a file mapping's addresses name the same bytes for the backend's
    // life; any other view gets a copy of its own, freed with its Weight.
    if (!t.file_mapped) {
      void* d = copy_to_device(t);
      return std::make_unique<CudaWeight>(t, use, d, d);
    }
    auto it = weights_.find(t.data);
    if (it == weights_.end()) it = weights_.emplace(t.data, copy_to_device(t)).first;
    return std::make_unique<CudaWeight>(t, use, it->second, nullptr);
  }

 private:
  static const void* matrix(const Weight& w) {
    if (w.use == WeightUse::Vector) throw EngineError(err::kArgument, "weight " + w.name + " is a vector, not a matrix");
    return cuda_weight(w).device;
  }
  static const float* vector(const Weight& w, int64_t n) {
    if (w.use != WeightUse::Vector || w.rows * w.cols < n)
      throw EngineError(err::kArgument, "weight " + w.name + " is not a vector of " + std::to_string(n) + " values");
    return cuda_weight(w).f32();
  }

  // Device memory, or an error that says what it was for, what it needed
  // and what the GPU had free.
  void* device_alloc(size_t bytes, const std::string& what) {
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e == cudaSuccess) return p;
    cudaGetLastError();  // clear the sticky-free allocation error
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    if (e == cudaErrorMemoryAllocation)
      throw EngineError(err::kNoMemory, "out of GPU memory: " + what + " needs " + mib(bytes) + ", " + mib(free_b) +
                                            " of " + mib(total_b) + " are free on GPU " + std::to_string(dev_) + " (" +
                                            prop_.name + "); use a smaller quantization or context size");
    fail(e, "cudaMalloc for " + what);
  }

  // Copies a tensor from the mapping to the device in staging-sized chunks:
  // the host copy into one pinned buffer overlaps the DMA out of the other.
  void* copy_to_device(const TensorView& t) {
    const size_t bytes = dtype_row_bytes(t.type, t.cols) * static_cast<size_t>(t.rows);
    void* dst = device_alloc(bytes, "tensor " + t.name);
    const uint8_t* src = static_cast<const uint8_t*>(t.data);
    for (size_t off = 0; off < bytes; off += kStagingBytes) {
      const size_t len = std::min(kStagingBytes, bytes - off);
      const int b = next_staging_;
      next_staging_ ^= 1;
      check(cudaEventSynchronize(staged_[b]), "weight upload");
      std::memcpy(staging_[b], src + off, len);
      check(cudaMemcpyAsync(static_cast<uint8_t*>(dst) + off, staging_[b], len, cudaMemcpyHostToDevice, s_),
            "weight upload");
      check(cudaEventRecord(staged_[b], s_), "weight upload");
    }
    uploaded_ += bytes;
    return dst;
  }

  const float* inv_freq(int head_dim, float theta) {
    const auto key = std::make_pair(head_dim, theta);
    auto it = inv_freq_.find(key);
    if (it != inv_freq_.end()) return it->second;
    std::vector<float> f(head_dim / 2);
    for (int i = 0; i < head_dim / 2; ++i) f[i] = static_cast<float>(std::pow(static_cast<double>(theta), -2.0 * i / head_dim));
    float* d = static_cast<float*>(device_alloc(f.size() * sizeof(float), "the RoPE table"));
    check(cudaMemcpy(d, f.data(), f.size() * sizeof(float), cudaMemcpyHostToDevice), "RoPE table upload");
    inv_freq_.emplace(key, d);
    return d;
  }

  cuda::block_a8* a8_space(size_t blocks) {
    if (blocks > a8_cap_) {
      free_bytes(a8_);
      a8_ = nullptr;
      a8_ = static_cast<cuda::block_a8*>(device_alloc(blocks * sizeof(cuda::block_a8), "quantized activations"));
      a8_cap_ = blocks;
    }
    return a8_;
  }

  // Host ints (positions, cache rows) in device buffer `slot`, which stays
  // valid until the next call with the same slot. The copy is staged by the
  // runtime, so the host array may change as soon as this returns.
  const int32_t* ints_to_device(const int32_t* host, size_t n, size_t slot) {
    if (slot >= ints_.size()) ints_.resize(slot + 1);
    auto& b = ints_[slot];
    if (n > b.second) {
      free_bytes(b.first);
      b.first = nullptr;
      b.first = static_cast<int32_t*>(device_alloc(std::max<size_t>(n, 1024) * sizeof(int32_t), "positions"));
      b.second = std::max<size_t>(n, 1024);
    }
    check(cudaMemcpyAsync(b.first, host, n * sizeof(int32_t), cudaMemcpyHostToDevice, s_), "copy of positions");
    return b.first;
  }

  int32_t* ids_space(size_t n) {
    if (n > ids_cap_) {
      free_bytes(ids_);
      ids_ = nullptr;
      if (ids_host_) cudaFreeHost(ids_host_);
      ids_host_ = nullptr;
      ids_ = static_cast<int32_t*>(device_alloc(n * sizeof(int32_t), "token ids"));
      check(cudaMallocHost(reinterpret_cast<void**>(&ids_host_), n * sizeof(int32_t)), "cudaMallocHost (token ids)");
      ids_cap_ = n;
    }
    return ids_;
  }

  // Launch errors (a bad configuration) surface at once, not at the next sync.
  void launched(const char* op) {
    const cudaError_t e = cudaPeekAtLastError();
    if (e != cudaSuccess) {
      cudaGetLastError();
      fail(e, std::string("launching ") + op);
    }
  }

  int dev_;
  cudaDeviceProp prop_{};
  cudaStream_t s_ = nullptr;
  uint8_t* staging_[2] = {nullptr, nullptr};
  cudaEvent_t staged_[2] = {nullptr, nullptr};
  int next_staging_ = 0;
  size_t uploaded_ = 0;
  std::unordered_map<const void*, void*> weights_;    // file data -> device copy
  std::map<std::pair<int, float>, float*> inv_freq_;
  cuda::block_a8* a8_ = nullptr;
  size_t a8_cap_ = 0;
  void* att_scratch_ = nullptr;
  size_t att_cap_ = 0;
  std::vector<std::pair<int32_t*, size_t>> ints_;  // ints_to_device buffers
  int32_t* ids_ = nullptr;
  int32_t* ids_host_ = nullptr;
  size_t ids_cap_ = 0;
  cudaGraphExec_t graph_exec_ = nullptr;
};

bool cuda_usable(int device, std::string* what) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    *what = no_driver_reason(e);
    return false;
  }
  if (count == 0) {
    *what = "no CUDA device found";
    return false;
  }
  if (device < 0 || device >= count) {
    *what = "there is no CUDA device " + std::to_string(device) + " (found " + std::to_string(count) + ": 0.." +
            std::to_string(count - 1) + ")";
    return false;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
    cudaGetLastError();
    *what = "could not read the properties of CUDA device " + std::to_string(device);
    return false;
  }
  const std::string cc = std::to_string(prop.major) + "." + std::to_string(prop.minor);
  if (prop.major < kMinMajor) {
    *what = "CUDA device " + std::to_string(device) + " (" + prop.name + ", compute capability " + cc +
            ") is older than this backend supports: it needs compute capability 8.0 or newer "
            "(A100, A10/L4/L40, RTX 30xx/40xx/50xx, H100/H200)";
    return false;
  }
  *what = "CUDA device " + std::to_string(device) + ": " + prop.name + ", compute capability " + cc + ", " +
          mib(prop.totalGlobalMem);
  return true;
}

std::unique_ptr<Backend> make_cuda_backend(int device) { return std::make_unique<CudaBackend>(device); }

}  // namespace cxr
