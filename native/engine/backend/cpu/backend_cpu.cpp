// backend_cpu.cpp - the CPU implementation of backend.h: threads from the pool,
// matmul and attention from their own files (cpu_ops.h), and here the small
// ops - norms, RoPE, activations, residual adds, KV stores - split over the
// threads, each row through the kernel table (cpu_kernels.h).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "backend/backend.h"
#include "types/error.h"
#include "format/gguf.h"
#include "backend/cpu/host_memory.h"
#include "backend/cpu/repack.h"
#include "backend/cpu/cpu_kernels.h"
#include "types/quants.h"
#include "backend/cpu/threadpool.h"
#include "backend/cpu/cpu_ops.h"

namespace cxr {
namespace {

// Elementwise ops split into chunks this large: enough work per chunk to
// outweigh waking a thread (a decode step's vectors stay on one thread).
constexpr int64_t kElementGrain = 16384;

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads)
      : pool_(threads > 0 ? threads : ThreadPool::default_threads()) {}
  ~CpuBackend() override {
    for (void* p : weight_chunks_) free_host(p);
  }

  const char* name() const override { return "cpu"; }
  int threads() const override { return pool_.size(); }

  float* alloc(size_t n) override { return static_cast<float*>(alloc_bytes(n * sizeof(float))); }
  void free(float* p) override { free_bytes(p); }
  // Zeroed, so a fresh KV cache is defined; large buffers (KV caches) on huge
  // pages, as decoding streams them every token like the weights.
  void* alloc_bytes(size_t n) override { return alloc_host(n); }
  void free_bytes(void* p) override { free_host(p); }
  void to_host(float* dst, const float* src, size_t n) override { std::memcpy(dst, src, n * sizeof(float)); }
  void from_host(float* dst, const float* src, size_t n) override { std::memcpy(dst, src, n * sizeof(float)); }

  bool supports(Op op, DType type) const override {
    return supports_engine_types(op, type);
  }

  void matmul(const Weight& W, const float* x, int64_t n, float* y, const Weight* bias) override {
    cpu_matmul(pool_, matrix(W), x, n, y, cpu_vector(bias), scratch_);
  }

  // Decode rows stream the weights, prompt rows go through panels; integer
  // weights are read once for both (matmul.cpp).
  void matmul_batch(const Weight& Wt, const float* x, int64_t n_decode, int64_t n_prompt, float* y) override {
    cpu_matmul_batch(pool_, matrix(Wt), x, n_decode, n_prompt, y, scratch_);
  }

  int32_t* alloc_ids(size_t n) override { return static_cast<int32_t*>(alloc_bytes(n * sizeof(int32_t))); }
  void free_ids(int32_t* p) override { free_bytes(p); }
  void ids_from_host(int32_t* dst, const int32_t* src, size_t n) override {
    std::memcpy(dst, src, n * sizeof(int32_t));
  }
  void ids_to_host(int32_t* dst, const int32_t* src, size_t n) override { std::memcpy(dst, src, n * sizeof(int32_t)); }

  void argmax(const float* x, int64_t n, int64_t width, int32_t* ids) override {
    for (int64_t r = 0; r < n; ++r) {
      const float* row = x + r * width;
      int64_t best = 0;
      float bv = std::isnan(row[0]) ? -INFINITY : row[0];
      for (int64_t i = 1; i < width; ++i) {
        const float v = std::isnan(row[i]) ? -INFINITY : row[i];
        if (v > bv) {  // strict: the lowest index wins ties
          bv = v;
          best = i;
        }
      }
      ids[r] = static_cast<int32_t>(best);
    }
  }

  void top_k(const float* x, int64_t n, int64_t width, int k, float* vals, int32_t* ids) override {
    const int64_t kk = std::min<int64_t>(k, width);
    std::vector<std::pair<float, int32_t>> c(static_cast<size_t>(width));
    for (int64_t r = 0; r < n; ++r) {
      const float* row = x + r * width;
      for (int64_t i = 0; i < width; ++i) c[i] = {std::isnan(row[i]) ? -INFINITY : row[i], static_cast<int32_t>(i)};
      std::partial_sort(c.begin(), c.begin() + kk, c.end(), [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
      });
      for (int64_t i = 0; i < kk; ++i) {
        vals[r * k + i] = c[i].first;
        ids[r * k + i] = c[i].second;
      }
    }
  }

  void get_rows(const Weight& Et, const int32_t* ids, int64_t n, float* out) override {
    const CpuWeight& E = matrix(Et);
    if (E.layout != WeightLayout::Rows)
      throw EngineError(err::kArgument, "get_rows: weight " + E.name + " was uploaded for matmul only");
    const TypeTraits& et = cpu_kernels().type(E.type);
    const size_t erow = dtype_row_bytes(E.type, E.cols);
    for (int64_t i = 0; i < n; ++i) {
      if (ids[i] < 0 || ids[i] >= E.rows)
        throw EngineError(err::kArgument, "token id " + std::to_string(ids[i]) + " is outside the vocabulary");
      et.to_float(static_cast<const uint8_t*>(E.data) + ids[i] * erow, out + i * E.cols, E.cols);
    }
  }

  void rmsnorm(const float* x, const Weight& wt, int64_t n, int64_t dim, float eps, float* out) override {
    const float* w = vector(wt, dim);
    const CpuKernels& k = cpu_kernels();
    pool_.parallel_for(n, 4, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t) k.rmsnorm(x + t * dim, w, dim, eps, out + t * dim);
    });
  }

  void add_rmsnorm(float* x, const float* y, const Weight& wt, int64_t n, int64_t dim, float eps,
                   float* out) override {
    const float* w = vector(wt, dim);
    const CpuKernels& k = cpu_kernels();
    pool_.parallel_for(n, 4, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t) k.add_rmsnorm(x + t * dim, y + t * dim, w, dim, eps, out + t * dim);
    });
  }

  void layernorm(const float* x, const Weight& wt, const Weight& bt, int64_t n, int64_t dim, float eps,
                 float* out) override {
    const float *w = vector(wt, dim), *b = vector(bt, dim);
    const CpuKernels& k = cpu_kernels();
    pool_.parallel_for(n, 4, [&](int64_t lo, int64_t hi, int) {
      for (int64_t t = lo; t < hi; ++t) k.layernorm(x + t * dim, w, b, dim, eps, out + t * dim);
    });
  }

  void add_layernorm(float* x, const float* y, const Weight& wt, const Weight& bt, int64_t n, int64_t dim, float eps,
                     float* out) override {
    const float *w = vector(wt, dim), *b = vector(bt, dim);
    const CpuKernels& k = cpu_kernels();
    pool_.parallel_for(n, 4, [&](int64_t lo, int64_t hi, int) {
      for (int64_t t = lo; t < hi; ++t) k.add_layernorm(x + t * dim, y + t * dim, w, b, dim, eps, out + t * dim);
    });
  }

  void rope(float* x, int64_t n, int n_heads, int head_dim, int64_t pos0, float theta) override {
    const std::vector<float>& table = rope_table(n, head_dim, pos0, theta);
    const CpuKernels& k = cpu_kernels();
    const int64_t width = static_cast<int64_t>(n_heads) * head_dim;
    pool_.parallel_for(n, 4, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t) {
        const float* cs = table.data() + t * 2 * head_dim;
        for (int h = 0; h < n_heads; ++h) k.rope_head(x + t * width + h * head_dim, cs, cs + head_dim, head_dim);
      }
    });
  }

  void rope_rows(float* x, int64_t n, int n_heads, int head_dim, const int32_t* pos, float theta) override {
    const std::vector<float>& table = rope_rows_table(n, head_dim, pos, theta);
    const CpuKernels& k = cpu_kernels();
    const int64_t width = static_cast<int64_t>(n_heads) * head_dim;
    pool_.parallel_for(n, 4, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t) {
        const float* cs = table.data() + t * 2 * head_dim;
        for (int h = 0; h < n_heads; ++h) k.rope_head(x + t * width + h * head_dim, cs, cs + head_dim, head_dim);
      }
    });
  }

  std::unique_ptr<KvCache> make_kv_cache(const KvCacheSpec& spec) override;

  void kv_store(KvCache& c, int layer, const float* k, const float* v, const SeqRows& s) override;

  void kv_attention(const KvCache& c, int layer, const float* q, float* out, const SeqRows* seqs, int n_seqs,
                    int n_heads, int n_kv_heads, int head_dim, float scale) override;

  void store_rows(void* dst, DType type, int64_t row0, const float* src, int64_t n, int64_t width) override {
    if (type == DType::F32) {
      std::memcpy(static_cast<float*>(dst) + row0 * width, src, n * width * sizeof(float));
      return;
    }
    const auto to_f16 = cpu_kernels().type(DType::F16).from_float;
    uint16_t* d = static_cast<uint16_t*>(dst) + row0 * width;
    pool_.parallel_for(n * width, kElementGrain, [&](int64_t b, int64_t e, int) { to_f16(src + b, d + b, e - b); });
  }

  void attention(const AttentionArgs& a) override { cpu_attention(pool_, a); }

  void silu_mul(float* gate, const float* up, int64_t count) override {
    const CpuKernels& k = cpu_kernels();
    pool_.parallel_for(count, kElementGrain, [&](int64_t b, int64_t e, int) { k.silu_mul(gate + b, up + b, e - b); });
  }

  void gelu(float* x, int64_t count) override {
    const CpuKernels& k = cpu_kernels();
    pool_.parallel_for(count, kElementGrain, [&](int64_t b, int64_t e, int) { k.gelu(x + b, e - b); });
  }

  void add(float* x, const float* y, int64_t count) override {
    const CpuKernels& k = cpu_kernels();
    pool_.parallel_for(count, kElementGrain, [&](int64_t b, int64_t e, int) { k.add(x + b, y + b, e - b); });
  }

  void add_broadcast(float* out, const float* x, const Weight& wt, int64_t n) override {
    const CpuWeight& w = cpu_weight(wt);
    if (w.use != WeightUse::Vector) throw EngineError(err::kArgument, "add_broadcast: " + w.name + " is not a vector");
    const int64_t width = w.cols;
    const CpuKernels& k = cpu_kernels();
    pool_.parallel_for(n, 4, [&](int64_t b, int64_t e, int) {
      for (int64_t r = b; r < e; ++r) {
        float* o = out + r * width;
        const float* src = w.f32() + (r % w.rows) * width;
        if (!x) {
          std::memcpy(o, src, width * sizeof(float));
          continue;
        }
        if (o != x + r * width) std::memcpy(o, x + r * width, width * sizeof(float));
        k.add(o, src, width);
      }
    });
  }

  void im2col(const float* pixels, int channels, int64_t size, int patch, float* out) override {
    const int64_t g = size / patch, row = static_cast<int64_t>(channels) * patch * patch;
    pool_.parallel_for(g * g, 16, [&](int64_t b, int64_t e, int) {
      for (int64_t p = b; p < e; ++p) {
        const int64_t gy = p / g, gx = p % g;
        float* dst = out + p * row;
        for (int64_t ch = 0; ch < channels; ++ch)
          for (int64_t ky = 0; ky < patch; ++ky)
            std::memcpy(dst + (ch * patch + ky) * patch, pixels + (ch * size + gy * patch + ky) * size + gx * patch,
                        patch * sizeof(float));
      }
    });
  }

  void sync() override {}

 protected:
  // Q4_0 and Q8_0 matrices for matmul are repacked into the x8 layout
  // (repack.h) when the SIMD kernels that read it are present. On the 7B
  // model, in alternating runs, Q4_0 decoding went from 8.8 to 10.1 and from
  // 7.7 to 8.6 tokens/s, Q8_0 from 4.6 to 7.1 and from 5.3 to 6.8. The copy
  // replaces the file's pages in memory rather than adding to them: each
  // tensor's pages are released once it is copied, so the resident set stays
  // about the file's size. It costs load time: ~0.6 s for the 7B Q4_0 on 2
  // cores when the memory is at hand, 1.5-6 s (Q8_0: 5-10 s) in a VM whose
  // host must first back the fresh pages. CXR_REPACK=0 keeps the rows as
  // mapped. Other matrices stay views into the mapping; vectors are copied.
  std::unique_ptr<Weight> make_weight(const TensorView& t, WeightUse use) override {
    auto w = std::make_unique<CpuWeight>(t, use);
    if (use == WeightUse::Vector) {
      w->values.assign(static_cast<const float*>(t.data), static_cast<const float*>(t.data) + t.rows * t.cols);
      w->data = w->values.data();
      return w;
    }
    if (use != WeightUse::Matmul || !repack_wanted(*w)) return w;
    const size_t bytes = dtype_row_bytes(w->type, w->cols) * static_cast<size_t>(w->rows);
    uint8_t* dst = weight_space(bytes);
    repack_x8(pool_, w->type, static_cast<const uint8_t*>(t.data), w->rows, w->cols, dst);
    if (t.file_mapped) release_mapped(t.data, bytes);
    w->data = dst;
    w->layout = WeightLayout::X8;
    return w;
  }

 private:
  // A matrix this backend made (not a vector).
  static const CpuWeight& matrix(const Weight& w) {
    if (w.use == WeightUse::Vector) throw EngineError(err::kArgument, "weight " + w.name + " is a vector, not a matrix");
    return cpu_weight(w);
  }
  // The F32 values of a Vector weight of at least n values.
  static const float* vector(const Weight& w, int64_t n) {
    if (w.use != WeightUse::Vector || w.rows * w.cols < n)
      throw EngineError(err::kArgument, "weight " + w.name + " is not a vector of " + std::to_string(n) + " values");
    return cpu_weight(w).f32();
  }

  // cos and sin of every rotary pair for positions pos0 .. pos0 + n, each
  // duplicated for both members of the pair: [n, cos[head_dim], sin[head_dim]].
  // Every layer, and q and k, share one table per forward chunk.
  const std::vector<float>& rope_table(int64_t n, int head_dim, int64_t pos0, float theta) {
    if (rope_.n != n || rope_.head_dim != head_dim || rope_.pos0 != pos0 || rope_.theta != theta) {
      rope_.table.resize(static_cast<size_t>(n) * 2 * head_dim);
      const int half = head_dim / 2;
      std::vector<double> inv_freq(half);
      for (int i = 0; i < half; ++i) inv_freq[i] = std::pow(static_cast<double>(theta), -2.0 * i / head_dim);
      for (int64_t t = 0; t < n; ++t) {
        float* cs = rope_.table.data() + t * 2 * head_dim;
        float* sn = cs + head_dim;
        const double pos = static_cast<double>(pos0 + t);
        for (int i = 0; i < half; ++i) {
          // The angle in double, as the reference computes it, then rounded once.
          const double a = pos * static_cast<float>(inv_freq[i]);
          cs[2 * i] = cs[2 * i + 1] = static_cast<float>(std::cos(a));
          sn[2 * i] = sn[2 * i + 1] = static_cast<float>(std::sin(a));
        }
      }
      rope_.n = n;
      rope_.head_dim = head_dim;
      rope_.pos0 = pos0;
      rope_.theta = theta;
    }
    return rope_.table;
  }

  // The rotary table for positions pos[0 .. n), laid out as rope_table's.
  // Consecutive runs of positions (a prompt chunk) and single decode positions
  // come out bit for bit as rope_table makes them.
  const std::vector<float>& rope_rows_table(int64_t n, int head_dim, const int32_t* pos, float theta) {
    if (rope_rows_.head_dim != head_dim || rope_rows_.theta != theta ||
        rope_rows_.pos.size() != static_cast<size_t>(n) || !std::equal(pos, pos + n, rope_rows_.pos.begin())) {
      rope_rows_.table.resize(static_cast<size_t>(n) * 2 * head_dim);
      const int half = head_dim / 2;
      std::vector<double> inv_freq(half);
      for (int i = 0; i < half; ++i) inv_freq[i] = std::pow(static_cast<double>(theta), -2.0 * i / head_dim);
      for (int64_t t = 0; t < n; ++t) {
        float* cs = rope_rows_.table.data() + t * 2 * head_dim;
        float* sn = cs + head_dim;
        const double p = static_cast<double>(pos[t]);
        for (int i = 0; i < half; ++i) {
          const double a = p * static_cast<float>(inv_freq[i]);
          cs[2 * i] = cs[2 * i + 1] = static_cast<float>(std::cos(a));
          sn[2 * i] = sn[2 * i + 1] = static_cast<float>(std::sin(a));
        }
      }
      rope_rows_.pos.assign(pos, pos + n);
      rope_rows_.head_dim = head_dim;
      rope_rows_.theta = theta;
    }
    return rope_rows_.table;
  }

  static bool repack_wanted(const CpuWeight& w) {
    if (!x8_type(w.type) || w.rows % kX8Rows != 0 || w.cols % 32 != 0) return false;
    const char* env = std::getenv("CXR_REPACK");
    if (env && !std::strcmp(env, "0")) return false;
    return cpu_kernels().gemv.x8_gemv != nullptr;
  }

  // Repacked weights go one after another into large chunks, reserved but
  // untouched until written: a buffer of their own would round each up to a
  // whole 2 MiB huge page, ~0.3 GB over the 225 matrices of the 7B model.
  static constexpr size_t kWeightChunk = size_t{256} << 20;
  uint8_t* weight_space(size_t bytes) {
    bytes = (bytes + 63) / 64 * 64;
    if (weight_chunks_.empty() || chunk_used_ + bytes > chunk_size_) {
      chunk_size_ = std::max(bytes, kWeightChunk);
      weight_chunks_.push_back(alloc_host(chunk_size_, false));
      chunk_used_ = 0;
    }
    uint8_t* p = static_cast<uint8_t*>(weight_chunks_.back()) + chunk_used_;
    chunk_used_ += bytes;
    return p;
  }

  ThreadPool pool_;
  std::vector<uint8_t> scratch_;       // quantized activations, reused across matmuls
  std::vector<void*> weight_chunks_;   // repacked weights (make_weight)
  size_t chunk_size_ = 0, chunk_used_ = 0;
  struct {
    int64_t n = -1, pos0 = -1;
    int head_dim = -1;
    float theta = 0;
    std::vector<float> table;
  } rope_;
  struct {
    std::vector<int32_t> pos;
    int head_dim = -1;
    float theta = 0;
    std::vector<float> table;
  } rope_rows_;
};

// The CPU's KV cache: per layer, one [cells, kv_dim] matrix for K and one for
// V in host memory. Not zeroed: a cell is read only after it is written, and
// untouched pages of a large cache cost no memory until a sequence reaches them.
class CpuKvCache final : public KvCache {
 public:
  explicit CpuKvCache(const KvCacheSpec& spec) : spec_(spec) {
    if (spec.type != DType::F32 && spec.type != DType::F16)
      throw EngineError(err::kArgument, "KV cache type must be f16 or f32");
    row_bytes_ = static_cast<size_t>(spec.kv_dim) * (spec.type == DType::F32 ? 4 : 2);
    const size_t per = row_bytes_ * static_cast<size_t>(spec.cells);
    try {
      for (int l = 0; l < spec.n_layers; ++l) {
        k_.push_back(alloc_host(per, false));
        v_.push_back(alloc_host(per, false));
      }
    } catch (...) {
      release();
      throw;
    }
    bytes_ = 2 * per * spec.n_layers;
  }
  ~CpuKvCache() override { release(); }
  const KvCacheSpec& spec() const override { return spec_; }
  size_t bytes() const override { return bytes_; }
  void* k(int l) const { return k_[l]; }
  void* v(int l) const { return v_[l]; }
  size_t row_bytes() const { return row_bytes_; }

 private:
  void release() {
    for (void* p : k_) free_host(p);
    for (void* p : v_) free_host(p);
    k_.clear();
    v_.clear();
  }
  KvCacheSpec spec_;
  size_t row_bytes_ = 0, bytes_ = 0;
  std::vector<void*> k_, v_;
};

std::unique_ptr<KvCache> CpuBackend::make_kv_cache(const KvCacheSpec& spec) {
  return std::make_unique<CpuKvCache>(spec);
}

void CpuBackend::kv_store(KvCache& cache, int layer, const float* k, const float* v, const SeqRows& s) {
  auto& c = static_cast<CpuKvCache&>(cache);
  const int64_t width = c.spec().kv_dim;
  const DType type = c.spec().type;
  const auto to_f16 = cpu_kernels().type(DType::F16).from_float;
  // Runs of consecutive cells go in one store each.
  for (int64_t i = 0; i < s.n;) {
    const int32_t cell0 = s.cells[s.pos0 + i];
    int64_t run = 1;
    while (i + run < s.n && s.cells[s.pos0 + i + run] == cell0 + run) ++run;
    for (int which = 0; which < 2; ++which) {
      const float* src = (which ? v : k) + (s.row0 + i) * width;
      void* dst = which ? c.v(layer) : c.k(layer);
      if (type == DType::F32) {
        std::memcpy(static_cast<float*>(dst) + cell0 * width, src, run * width * sizeof(float));
      } else {
        uint16_t* d = static_cast<uint16_t*>(dst) + cell0 * width;
        pool_.parallel_for(run * width, kElementGrain,
                           [&](int64_t b, int64_t e, int) { to_f16(src + b, d + b, e - b); });
      }
    }
    i += run;
  }
}

void CpuBackend::kv_attention(const KvCache& cache, int layer, const float* q, float* out, const SeqRows* seqs,
                              int n_seqs, int n_heads, int n_kv_heads, int head_dim, float scale) {
  const auto& c = static_cast<const CpuKvCache&>(cache);
  const int64_t q_width = static_cast<int64_t>(n_heads) * head_dim;
  for (int i = 0; i < n_seqs; ++i) {
    const SeqRows& s = seqs[i];
    AttentionArgs a;
    a.q = q + s.row0 * q_width;
    a.k = c.k(layer);
    a.v = c.v(layer);
    a.kv_type = c.spec().type;
    a.out = out + s.row0 * q_width;
    a.n = s.n;
    a.n_kv = s.pos0 + s.n;
    a.pos0 = s.pos0;
    a.n_heads = n_heads;
    a.n_kv_heads = n_kv_heads;
    a.head_dim = head_dim;
    a.causal = true;
    a.scale = scale;
    a.cells = s.cells;
    a.decode = s.decode;
    cpu_attention(pool_, a);
  }
}

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

}  // namespace cxr
