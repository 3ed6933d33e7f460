// batch_defaults.cpp - the seam's batching ops (backend.h) in terms of the
// older ones, for a backend without kernels of its own for them yet. A backend
// that has them (the CPU's) overrides every one.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "types/error.h"

namespace cxr {
namespace {

// Per layer one [cells, kv_dim] matrix for K and one for V, in backend memory.
class RowsKvCache final : public KvCache {
 public:
  RowsKvCache(Backend& be, const KvCacheSpec& spec) : be_(be), spec_(spec) {
    const size_t per = row_bytes() * static_cast<size_t>(spec.cells);
    try {
      for (int l = 0; l < spec.n_layers; ++l) {
        k_.push_back(be.alloc_bytes(per));
        v_.push_back(be.alloc_bytes(per));
      }
    } catch (...) {
      release();
      throw;
    }
  }
  ~RowsKvCache() override { release(); }
  const KvCacheSpec& spec() const override { return spec_; }
  size_t bytes() const override { return 2 * row_bytes() * static_cast<size_t>(spec_.cells) * spec_.n_layers; }
  size_t row_bytes() const { return static_cast<size_t>(spec_.kv_dim) * (spec_.type == DType::F32 ? 4 : 2); }
  void* k(int l) const { return k_[l]; }
  void* v(int l) const { return v_[l]; }

 private:
  void release() {
    for (void* p : k_) be_.free_bytes(p);
    for (void* p : v_) be_.free_bytes(p);
    k_.clear();
    v_.clear();
  }
  Backend& be_;
  KvCacheSpec spec_;
  std::vector<void*> k_, v_;
};

}  // namespace

void Backend::matmul_batch(const Weight& W, const float* x, int64_t n_decode, int64_t n_prompt, float* y) {
  if (n_decode > 0) matmul(W, x, n_decode, y);
  if (n_prompt > 0) matmul(W, x + n_decode * W.cols, n_prompt, y + n_decode * W.rows);
}

int32_t* Backend::alloc_ids(size_t n) { return new int32_t[std::max<size_t>(n, 1)](); }
void Backend::free_ids(int32_t* p) { delete[] p; }
void Backend::ids_from_host(int32_t* dst, const int32_t* src, size_t n) { std::memcpy(dst, src, n * sizeof(int32_t)); }
void Backend::ids_to_host(int32_t* dst, const int32_t* src, size_t n) { std::memcpy(dst, src, n * sizeof(int32_t)); }

void Backend::argmax(const float* x, int64_t n, int64_t width, int32_t* ids) {
  std::vector<float> row(static_cast<size_t>(width));
  for (int64_t r = 0; r < n; ++r) {
    sync();
    to_host(row.data(), x + r * width, static_cast<size_t>(width));
    int32_t best = 0;
    float bv = std::isnan(row[0]) ? -INFINITY : row[0];
    for (int64_t i = 1; i < width; ++i) {
      const float v = std::isnan(row[i]) ? -INFINITY : row[i];
      if (v > bv) {
        bv = v;
        best = static_cast<int32_t>(i);
      }
    }
    ids_from_host(ids + r, &best, 1);
  }
}

void Backend::top_k(const float* x, int64_t n, int64_t width, int k, float* vals, int32_t* ids) {
  std::vector<float> row(static_cast<size_t>(width));
  std::vector<std::pair<float, int32_t>> c(static_cast<size_t>(width));
  const int64_t kk = std::min<int64_t>(k, width);
  std::vector<float> hv(static_cast<size_t>(kk));
  std::vector<int32_t> hi(static_cast<size_t>(kk));
  for (int64_t r = 0; r < n; ++r) {
    sync();
    to_host(row.data(), x + r * width, static_cast<size_t>(width));
    for (int64_t i = 0; i < width; ++i) c[i] = {std::isnan(row[i]) ? -INFINITY : row[i], static_cast<int32_t>(i)};
    std::partial_sort(c.begin(), c.begin() + kk, c.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    for (int64_t i = 0; i < kk; ++i) {
      hv[i] = c[i].first;
      hi[i] = c[i].second;
    }
    from_host(vals + r * k, hv.data(), static_cast<size_t>(kk));
    ids_from_host(ids + r * k, hi.data(), static_cast<size_t>(kk));
  }
}

void Backend::rope_rows(float* x, int64_t n, int n_heads, int head_dim, const int32_t* pos, float theta) {
  const int64_t width = static_cast<int64_t>(n_heads) * head_dim;
  for (int64_t i = 0; i < n;) {
    int64_t run = 1;
    while (i + run < n && pos[i + run] == pos[i] + run) ++run;
    rope(x + i * width, run, n_heads, head_dim, pos[i], theta);
    i += run;
  }
}

std::unique_ptr<KvCache> Backend::make_kv_cache(const KvCacheSpec& spec) {
  if (spec.type != DType::F32 && spec.type != DType::F16)
    throw EngineError(err::kArgument, "KV cache type must be f16 or f32");
  return std::make_unique<RowsKvCache>(*this, spec);
}

void Backend::kv_store(KvCache& cache, int layer, const float* k, const float* v, const SeqRows& s) {
  auto& c = static_cast<RowsKvCache&>(cache);
  const int64_t width = c.spec().kv_dim;
  for (int64_t i = 0; i < s.n;) {
    const int32_t cell0 = s.cells[s.pos0 + i];
    int64_t run = 1;
    while (i + run < s.n && s.cells[s.pos0 + i + run] == cell0 + run) ++run;
    store_rows(c.k(layer), c.spec().type, cell0, k + (s.row0 + i) * width, run, width);
    store_rows(c.v(layer), c.spec().type, cell0, v + (s.row0 + i) * width, run, width);
    i += run;
  }
}

void Backend::kv_attention(const KvCache& cache, int layer, const float* q, float* out, const SeqRows* seqs,
                           int n_seqs, int n_heads, int n_kv_heads, int head_dim, float scale) {
  const auto& c = static_cast<const RowsKvCache&>(cache);
  const int64_t q_width = static_cast<int64_t>(n_heads) * head_dim;
  for (int i = 0; i < n_seqs; ++i) {
    const SeqRows& s = seqs[i];
    const int64_t n_kv = s.pos0 + s.n;
    for (int64_t p = 1; p < n_kv; ++p)
      if (s.cells[p] != s.cells[0] + p)
        throw EngineError(err::kArgument, std::string(name()) +
                                              " backend: a sequence's KV cells must be consecutive here; load the model "
                                              "with parallel: 1");
    const size_t off = c.row_bytes() * static_cast<size_t>(s.cells[0]);
    AttentionArgs a;
    a.q = q + s.row0 * q_width;
    a.k = static_cast<const uint8_t*>(c.k(layer)) + off;
    a.v = static_cast<const uint8_t*>(c.v(layer)) + off;
    a.kv_type = c.spec().type;
    a.out = out + s.row0 * q_width;
    a.n = s.n;
    a.n_kv = n_kv;
    a.pos0 = s.pos0;
    a.n_heads = n_heads;
    a.n_kv_heads = n_kv_heads;
    a.head_dim = head_dim;
    a.causal = true;
    a.scale = scale;
    a.decode = s.decode;
    attention(a);
  }
}

}  // namespace cxr
