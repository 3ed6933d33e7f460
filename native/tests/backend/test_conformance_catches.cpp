// test_conformance_catches.cpp - the conformance suite fails a backend that
// is wrong. A backend that hands every call to the CPU backend passes it;
// the same backend with one deliberate fault (a wrong element, a wrong
// constant, a lost row) must fail it, one fault at a time.
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "backend/conformance/conformance.h"
#include "support/test.h"

using cxr::Backend;
using cxr::DType;
using cxr::Weight;

namespace {

enum class Fault { None, MatmulLastElement, RmsnormEps, AttentionScale, Im2colSwap, GetRowsNext, KvStoreLastRow };

// Forwards every slot to the CPU backend, except the one `fault` spoils.
class Faulty final : public Backend {
 public:
  explicit Faulty(Fault f) : in_(cxr::make_backend("cpu", 2)), f_(f) {}
  const char* name() const override { return "faulty-cpu"; }
  int threads() const override { return in_->threads(); }
  float* alloc(size_t n) override { return in_->alloc(n); }
  void free(float* p) override { in_->free(p); }
  void* alloc_bytes(size_t n) override { return in_->alloc_bytes(n); }
  void free_bytes(void* p) override { in_->free_bytes(p); }
  void to_host(float* d, const float* s, size_t n) override { in_->to_host(d, s, n); }
  void from_host(float* d, const float* s, size_t n) override { in_->from_host(d, s, n); }
  bool supports(cxr::Op op, DType t) const override { return in_->supports(op, t); }
  void matmul(const Weight& W, const float* x, int64_t n, float* y, const Weight* bias) override {
    in_->matmul(W, x, n, y, bias);
    if (f_ == Fault::MatmulLastElement) {
      const float zero = 0.0f;
      in_->from_host(y + n * W.rows - 1, &zero, 1);
    }
  }
  void matmul_batch(const Weight& W, const float* x, int64_t nd, int64_t np, float* y) override {
    in_->matmul_batch(W, x, nd, np, y);
  }
  int32_t* alloc_ids(size_t n) override { return in_->alloc_ids(n); }
  void free_ids(int32_t* p) override { in_->free_ids(p); }
  void ids_from_host(int32_t* d, const int32_t* s, size_t n) override { in_->ids_from_host(d, s, n); }
  void ids_to_host(int32_t* d, const int32_t* s, size_t n) override { in_->ids_to_host(d, s, n); }
  void get_rows(const Weight& E, const int32_t* ids, int64_t n, float* out) override {
    if (f_ != Fault::GetRowsNext) return in_->get_rows(E, ids, n, out);
    std::vector<int32_t> next(ids, ids + n);
    for (int32_t& i : next)
      if (i >= 0 && i < E.rows) i = static_cast<int32_t>((i + 1) % E.rows);
    in_->get_rows(E, next.data(), n, out);
  }
  void argmax(const float* x, int64_t n, int64_t w, int32_t* ids) override { in_->argmax(x, n, w, ids); }
  void top_k(const float* x, int64_t n, int64_t w, int k, float* v, int32_t* ids) override {
    in_->top_k(x, n, w, k, v, ids);
  }
  void rmsnorm(const float* x, const Weight& w, int64_t n, int64_t d, float eps, float* o) override {
    in_->rmsnorm(x, w, n, d, f_ == Fault::RmsnormEps ? eps * 10 : eps, o);
  }
  void layernorm(const float* x, const Weight& w, const Weight& b, int64_t n, int64_t d, float eps, float* o) override {
    in_->layernorm(x, w, b, n, d, eps, o);
  }
  void rope(float* x, int64_t n, int h, int hd, int64_t p0, float th) override { in_->rope(x, n, h, hd, p0, th); }
  void rope_rows(float* x, int64_t n, int h, int hd, const int32_t* p, float th) override {
    in_->rope_rows(x, n, h, hd, p, th);
  }
  void store_rows(void* d, DType t, int64_t r0, const float* s, int64_t n, int64_t w) override {
    in_->store_rows(d, t, r0, s, n, w);
  }
  void attention(const cxr::AttentionArgs& a) override {
    cxr::AttentionArgs b = a;
    if (f_ == Fault::AttentionScale) b.scale *= 1.01f;
    in_->attention(b);
  }
  std::unique_ptr<cxr::KvCache> make_kv_cache(const cxr::KvCacheSpec& s) override { return in_->make_kv_cache(s); }
  void kv_store(cxr::KvCache& c, int l, const float* k, const float* v, const cxr::SeqRows& s) override {
    cxr::SeqRows t = s;
    if (f_ == Fault::KvStoreLastRow && t.n > 1) --t.n;
    in_->kv_store(c, l, k, v, t);
  }
  void kv_attention(const cxr::KvCache& c, int l, const float* q, float* o, const cxr::SeqRows* s, int ns, int h, int kh,
                    int hd, float sc) override {
    in_->kv_attention(c, l, q, o, s, ns, h, kh, hd, sc);
  }
  void silu_mul(float* g, const float* u, int64_t n) override { in_->silu_mul(g, u, n); }
  void gelu(float* x, int64_t n) override { in_->gelu(x, n); }
  void add(float* x, const float* y, int64_t n) override { in_->add(x, y, n); }
  void add_broadcast(float* o, const float* x, const Weight& w, int64_t n) override { in_->add_broadcast(o, x, w, n); }
  void im2col(const float* px, int c, int64_t size, int patch, float* out) override {
    in_->im2col(px, c, size, patch, out);
    if (f_ == Fault::Im2colSwap) {
      float a[2];
      in_->to_host(a, out, 2);
      std::swap(a[0], a[1]);
      in_->from_host(out, a, 2);
    }
  }
  void add_rmsnorm(float* x, const float* y, const Weight& w, int64_t n, int64_t d, float eps, float* o) override {
    in_->add_rmsnorm(x, y, w, n, d, eps, o);
  }
  void add_layernorm(float* x, const float* y, const Weight& w, const Weight& b, int64_t n, int64_t d, float eps,
                     float* o) override {
    in_->add_layernorm(x, y, w, b, n, d, eps, o);
  }
  void sync() override { in_->sync(); }

 protected:
  // The CPU backend's own weight: every op above hands it back to the CPU.
  std::unique_ptr<Weight> make_weight(const cxr::TensorView& t, cxr::WeightUse use) override {
    return in_->upload(t, use);
  }

 private:
  std::unique_ptr<Backend> in_;
  Fault f_;
};

}  // namespace

TEST(conformance_catches_a_wrong_backend) {
  {
    Faulty right(Fault::None);
    const auto r = cxrtest::conformance::run(right);
    CHECK(r.failed == 0 && r.cases > 300);
  }
  const std::pair<Fault, const char*> faults[] = {
      {Fault::MatmulLastElement, "matmul's last element zeroed"},
      {Fault::RmsnormEps, "rmsnorm with eps x10"},
      {Fault::AttentionScale, "attention scale x1.01"},
      {Fault::Im2colSwap, "im2col's first two elements swapped"},
      {Fault::GetRowsNext, "get_rows returning the next row"},
      {Fault::KvStoreLastRow, "kv_store dropping each sequence's last row"},
  };
  for (const auto& [fault, what] : faults) {
    Faulty wrong(fault);
    const auto r = cxrtest::conformance::run(wrong, /*quiet=*/true);
    if (r.failed == 0) std::fprintf(stderr, "  the suite passed a backend with %s\n", what);
    CHECK(r.failed > 0);
  }
}
