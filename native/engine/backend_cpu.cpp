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
#include "cpu_ops.h"

namespace cxr {
namespace {

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
    cpu_matmul(pool_, W, x, n, y, bias, scratch_);
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

  void attention(const AttentionArgs& a) override { cpu_attention(pool_, a); }

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
