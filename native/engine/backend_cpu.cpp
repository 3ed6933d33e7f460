// backend_cpu.cpp - the CPU implementation of backend.h: threads from the pool,
// SIMD through the quants traits table (chosen at run time), scalar elsewhere.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "backend.h"
#include "error.h"
#include "gguf.h"
#include "quants.h"
#include "threadpool.h"

namespace cxr {
namespace {

// Rows of the output handed to a thread at a time. Small enough to balance
// 4096-row decode matmuls over many threads, large enough to amortise the
// atomic fetch.
constexpr int64_t kRowGrain = 16;
// Tokens processed together per weight row during prefill: the weight row stays
// in L1 while it meets this many activation rows.
constexpr int64_t kTokenTile = 8;

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads)
      : pool_(threads > 0 ? threads : ThreadPool::default_threads()) {}

  const char* name() const override { return "cpu"; }
  int threads() const override { return pool_.size(); }

  float* alloc(size_t n) override { return static_cast<float*>(alloc_bytes(n * sizeof(float))); }
  void free(float* p) override { free_bytes(p); }
  void* alloc_bytes(size_t n) override {
    // 64-byte alignment for SIMD loads; calloc-like zeroing so a fresh KV cache is defined.
    size_t size = (n + 63) / 64 * 64;
    if (size == 0) size = 64;
    void* p = std::aligned_alloc(64, size);
    if (!p) throw EngineError(err::kArgument, "out of memory allocating " + std::to_string(n) + " bytes");
    std::memset(p, 0, size);
    return p;
  }
  void free_bytes(void* p) override { std::free(p); }
  void to_host(float* dst, const float* src, size_t n) override { std::memcpy(dst, src, n * sizeof(float)); }
  void from_host(float* dst, const float* src, size_t n) override { std::memcpy(dst, src, n * sizeof(float)); }

  Weight weight(const GgufTensor& t) override {
    Weight w;
    w.type = t.type;
    w.cols = t.ne[0];
    w.rows = t.ne[1] * t.ne[2] * t.ne[3];
    w.data = t.data;
    return w;
  }

  void matmul(const Weight& W, const float* x, int64_t n, float* y, const float* bias) override {
    const TypeTraits& wt = type_traits(W.type);
    const int64_t rows = W.rows, cols = W.cols;
    const size_t wrow = dtype_row_bytes(W.type, cols);

    // Activations are converted once to the type the weight's dot product wants.
    const void* xq = x;
    size_t xrow = cols * sizeof(float);
    if (wt.vec_dot_type != DType::F32) {
      const TypeTraits& qt = type_traits(wt.vec_dot_type);
      xrow = dtype_row_bytes(wt.vec_dot_type, cols);
      if (scratch_.size() < xrow * n) scratch_.resize(xrow * n);
      uint8_t* dst = scratch_.data();
      pool_.parallel_for(n, 1, [&](int64_t b, int64_t e, int) {
        for (int64_t t = b; t < e; ++t) qt.from_float(x + t * cols, dst + t * xrow, cols);
      });
      xq = dst;
    }
    const uint8_t* wbase = static_cast<const uint8_t*>(W.data);
    const uint8_t* xbase = static_cast<const uint8_t*>(xq);
    pool_.parallel_for(rows, kRowGrain, [&](int64_t r0, int64_t r1, int) {
      for (int64_t t0 = 0; t0 < n; t0 += kTokenTile) {
        const int64_t t1 = std::min(n, t0 + kTokenTile);
        for (int64_t r = r0; r < r1; ++r) {
          const void* wr = wbase + r * wrow;
          const float b = bias ? bias[r] : 0.0f;
          for (int64_t t = t0; t < t1; ++t) {
            float s;
            wt.vec_dot(cols, &s, wr, xbase + t * xrow);
            y[t * rows + r] = s + b;
          }
        }
      }
    });
  }

  void get_rows(const Weight& E, const int32_t* ids, int64_t n, float* out) override {
    const TypeTraits& et = type_traits(E.type);
    const size_t erow = dtype_row_bytes(E.type, E.cols);
    for (int64_t i = 0; i < n; ++i) {
      if (ids[i] < 0 || ids[i] >= E.rows)
        throw EngineError(err::kArgument, "token id " + std::to_string(ids[i]) + " is outside the vocabulary");
      et.to_float(static_cast<const uint8_t*>(E.data) + ids[i] * erow, out + i * E.cols, E.cols);
    }
  }

  void rmsnorm(const float* x, const float* w, int64_t n, int64_t dim, float eps, float* out) override {
    pool_.parallel_for(n, 4, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t) {
        const float* xr = x + t * dim;
        float* o = out + t * dim;
        double ss = 0;
        for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
        const float r = 1.0f / std::sqrt(static_cast<float>(ss / dim) + eps);
        for (int64_t i = 0; i < dim; ++i) o[i] = xr[i] * r * w[i];
      }
    });
  }

  void layernorm(const float* x, const float* w, const float* b, int64_t n, int64_t dim, float eps,
                 float* out) override {
    pool_.parallel_for(n, 4, [&](int64_t lo, int64_t hi, int) {
      for (int64_t t = lo; t < hi; ++t) {
        const float* xr = x + t * dim;
        float* o = out + t * dim;
        double sum = 0;
        for (int64_t i = 0; i < dim; ++i) sum += xr[i];
        const double mean = sum / dim;
        double var = 0;
        for (int64_t i = 0; i < dim; ++i) var += (xr[i] - mean) * (xr[i] - mean);
        const float r = static_cast<float>(1.0 / std::sqrt(var / dim + eps));
        const float m = static_cast<float>(mean);
        for (int64_t i = 0; i < dim; ++i) o[i] = (xr[i] - m) * r * w[i] + b[i];
      }
    });
  }

  void rope(float* x, int64_t n, int n_heads, int head_dim, int64_t pos0, float theta) override {
    // The angle for pair i depends only on position and i: compute the table once per call.
    const int half = head_dim / 2;
    std::vector<float> inv_freq(half);
    for (int i = 0; i < half; ++i)
      inv_freq[i] = static_cast<float>(std::pow(static_cast<double>(theta), -2.0 * i / head_dim));
    const int64_t width = static_cast<int64_t>(n_heads) * head_dim;
    pool_.parallel_for(n, 4, [&](int64_t b, int64_t e, int) {
      std::vector<float> cs(half), sn(half);
      for (int64_t t = b; t < e; ++t) {
        const double pos = static_cast<double>(pos0 + t);
        for (int i = 0; i < half; ++i) {
          const double a = pos * inv_freq[i];
          cs[i] = static_cast<float>(std::cos(a));
          sn[i] = static_cast<float>(std::sin(a));
        }
        float* row = x + t * width;
        for (int h = 0; h < n_heads; ++h) {
          float* v = row + h * head_dim;
          for (int i = 0; i < half; ++i) {
            const float a = v[2 * i], c = v[2 * i + 1];
            v[2 * i] = a * cs[i] - c * sn[i];
            v[2 * i + 1] = a * sn[i] + c * cs[i];
          }
        }
      }
    });
  }

  void store_rows(void* dst, DType type, int64_t row0, const float* src, int64_t n, int64_t width) override {
    if (type == DType::F32) {
      std::memcpy(static_cast<float*>(dst) + row0 * width, src, n * width * sizeof(float));
      return;
    }
    uint16_t* d = static_cast<uint16_t*>(dst) + row0 * width;
    for (int64_t i = 0; i < n * width; ++i) d[i] = fp32_to_fp16(src[i]);
  }

  void attention(const AttentionArgs& a) override {
    // One task per (query row, head): a streaming ("online") softmax over the
    // keys, so no score matrix is ever stored, whatever the sequence length.
    const int64_t tasks = a.n * a.n_heads;
    const int group = a.n_heads / a.n_kv_heads;  // query heads sharing one KV head
    const int64_t kv_width = static_cast<int64_t>(a.n_kv_heads) * a.head_dim;
    const int64_t q_width = static_cast<int64_t>(a.n_heads) * a.head_dim;
    const TypeTraits& kt = type_traits(a.kv_type);
    const size_t esize = a.kv_type == DType::F32 ? 4 : 2;
    pool_.parallel_for(tasks, 4, [&](int64_t b, int64_t e, int) {
      std::vector<float> acc(a.head_dim), vrow(a.head_dim);
      for (int64_t task = b; task < e; ++task) {
        const int64_t i = task / a.n_heads;
        const int h = static_cast<int>(task % a.n_heads);
        const int kvh = h / group;
        const float* q = a.q + i * q_width + static_cast<int64_t>(h) * a.head_dim;
        const int64_t visible = a.causal ? a.pos0 + i + 1 : a.n_kv;
        float m = -INFINITY, l = 0.0f;
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t j = 0; j < visible; ++j) {
          const uint8_t* krow = static_cast<const uint8_t*>(a.k) + (j * kv_width + kvh * a.head_dim) * esize;
          const uint8_t* vr = static_cast<const uint8_t*>(a.v) + (j * kv_width + kvh * a.head_dim) * esize;
          float s;
          kt.vec_dot(a.head_dim, &s, krow, q);
          s *= a.scale;
          const float* vp;
          if (a.kv_type == DType::F32) {
            vp = reinterpret_cast<const float*>(vr);
          } else {
            kt.to_float(vr, vrow.data(), a.head_dim);
            vp = vrow.data();
          }
          if (s > m) {
            // New maximum: rescale what was accumulated so far.
            const float c = std::exp(m - s);
            l *= c;
            for (int d = 0; d < a.head_dim; ++d) acc[d] *= c;
            m = s;
          }
          const float p = std::exp(s - m);
          l += p;
          for (int d = 0; d < a.head_dim; ++d) acc[d] += p * vp[d];
        }
        float* o = a.out + i * q_width + static_cast<int64_t>(h) * a.head_dim;
        const float inv = l > 0 ? 1.0f / l : 0.0f;
        for (int d = 0; d < a.head_dim; ++d) o[d] = acc[d] * inv;
      }
    });
  }

  void silu_mul(float* gate, const float* up, int64_t count) override {
    pool_.parallel_for(count, 4096, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) {
        const float g = gate[i];
        gate[i] = g / (1.0f + std::exp(-g)) * up[i];
      }
    });
  }

  void gelu(float* x, int64_t count) override {
    pool_.parallel_for(count, 4096, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
    });
  }

  void add(float* x, const float* y, int64_t count) override {
    for (int64_t i = 0; i < count; ++i) x[i] += y[i];
  }

  void sync() override {}

 private:
  ThreadPool pool_;
  std::vector<uint8_t> scratch_;  // quantized activations, reused across matmuls
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

}  // namespace cxr
