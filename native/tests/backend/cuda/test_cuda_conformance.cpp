// test_cuda_conformance.cpp - every op of the seam on the CUDA backend
// against the CPU backend with the same inputs, for every weight type and for
// the shapes that pick each kernel (decode GEMV, tensor-core prefill, split-K
// and tiled attention). Without a usable GPU (or in a build without the CUDA
// backend) it says so in one line and checks that choosing "cuda" fails with
// that reason. Run it alone with `cxr-tests cuda_conformance`.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "format/gguf.h"
#include "types/dtype.h"
#include "types/error.h"
#include "types/quants.h"
#include "support/data.h"
#include "support/test.h"
#include "support/weights.h"

namespace cxr {
bool cuda_usable(int device, std::string* what);
}

using namespace cxr;
using cxrtest::randn;

namespace {

struct Pair {
  std::unique_ptr<Backend> cpu, gpu;
};

// Both backends, or none (with one line saying why) when there is no GPU.
bool backends(Pair* p) {
  std::string why;
  if (!cuda_usable(0, &why)) {
    static bool said = false;
    if (!said) std::printf("# cuda conformance skipped: %s\n", why.c_str());
    said = true;
    CHECK_THROWS(choose_backend("cuda", 1, 0), why.c_str());
    return false;
  }
  p->cpu = make_cpu_backend(2);
  p->gpu = make_backend("cuda", 0);
  return true;
}

// A device buffer holding `v`.
float* upload(Backend& be, const std::vector<float>& v) {
  float* d = be.alloc(v.size());
  be.from_host(d, v.data(), v.size());
  return d;
}

std::vector<float> download(Backend& be, const float* d, size_t n) {
  std::vector<float> v(n);
  be.sync();
  be.to_host(v.data(), d, n);
  return v;
}

// max |a - b| / max |b|
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0, mag = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]));
    mag = std::max(mag, std::fabs(static_cast<double>(b[i])));
  }
  return worst / mag;
}

// Runs f(backend, in...) -> device output on both, compares the outputs.
template <typename F>
double compare(Pair& p, size_t out_n, const std::vector<std::vector<float>>& ins, F f) {
  std::vector<float> res[2];
  Backend* bes[2] = {p.cpu.get(), p.gpu.get()};
  for (int k = 0; k < 2; ++k) {
    Backend& be = *bes[k];
    std::vector<float*> d;
    for (const auto& v : ins) d.push_back(upload(be, v));
    float* out = be.alloc(out_n);
    f(be, d, out);
    res[k] = download(be, out, out_n);
    for (float* x : d) be.free(x);
    be.free(out);
  }
  return rel_err(res[1], res[0]);
}

// Per type, the largest relative difference the two backends may have on a
// matmul: both quantize activations to int8 for the quantized types, in
// different block sizes (CPU 32 or 256, CUDA 32); the CUDA prefill of
// F16/BF16/Q4_K/Q6_K rounds activations to f16.
double matmul_tol(DType t, int64_t n) {
  if (t == DType::F32) return 1e-5;
  if (t == DType::F16 || t == DType::BF16) return n > 8 ? 3e-3 : 1e-5;
  return 2e-2;
}

}  // namespace

TEST(cuda_conformance_matmul_every_type_and_kernel) {
  Pair p;
  if (!backends(&p)) return;
  const int64_t rows = 192, cols = 512;
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
    const auto w = randn(rows * cols, 3, 0.05f);
    std::vector<uint8_t> q(dtype_row_bytes(t, cols) * rows);
    quantize_weights(t, w.data(), q.data(), rows, cols);
    GgufTensor gt;
    gt.name = std::string("w.") + dtype_name(t);
    gt.ne[0] = cols;
    gt.ne[1] = rows;
    gt.type = t;
    gt.nbytes = q.size();
    gt.data = q.data();
    const auto wcp = p.cpu->upload(tensor_view(gt), WeightUse::Rows), wgp = p.gpu->upload(tensor_view(gt), WeightUse::Rows);
    const Weight &wc = *wcp, &wg = *wgp;
    const auto bias = randn(rows, 4);
    const auto bc = cxrtest::vector_weight(*p.cpu, bias), bg = cxrtest::vector_weight(*p.gpu, bias);
    const Weight* bs[2] = {bc.get(), bg.get()};
    for (int64_t n : {1, 3, 8, 9, 37, 130}) {
      const auto x = randn(n * cols, 5 + n);
      std::vector<float> res[2];
      Backend* bes[2] = {p.cpu.get(), p.gpu.get()};
      const Weight* ws[2] = {&wc, &wg};
      for (int k = 0; k < 2; ++k) {
        float* dx = upload(*bes[k], x);
        float* dy = bes[k]->alloc(n * rows);
        bes[k]->matmul(*ws[k], dx, n, dy, bs[k]);
        res[k] = download(*bes[k], dy, n * rows);
        bes[k]->free(dx);
        bes[k]->free(dy);
      }
      const double e = rel_err(res[1], res[0]);
      if (!(e <= matmul_tol(t, n))) std::fprintf(stderr, "  %s n=%lld: rel err %.3g\n", dtype_name(t), static_cast<long long>(n), e);
      CHECK(e <= matmul_tol(t, n));
    }
    // get_rows dequantizes the same values (to rounding: the GPU may fuse Q4_K's d·sc·q - dmin·m)
    const int32_t ids[4] = {0, 191, 7, 7};
    std::vector<float> rows_out[2];
    Backend* bes[2] = {p.cpu.get(), p.gpu.get()};
    const Weight* ws[2] = {&wc, &wg};
    for (int k = 0; k < 2; ++k) {
      float* d = bes[k]->alloc(4 * cols);
      bes[k]->get_rows(*ws[k], ids, 4, d);
      rows_out[k] = download(*bes[k], d, 4 * cols);
      bes[k]->free(d);
    }
    CHECK(rel_err(rows_out[1], rows_out[0]) <= 1e-6);
  }
}

TEST(cuda_conformance_norms_rope_activations_stores) {
  Pair p;
  if (!backends(&p)) return;
  const int64_t n = 5, dim = 1024;
  const auto x = randn(n * dim, 1, 2.0f, 3.0f), y = randn(n * dim, 2), wf = randn(dim, 3), bf = randn(dim, 4);
  // Each backend's own copy of the norm vectors, looked up by the backend an op runs on.
  const auto wc = cxrtest::vector_weight(*p.cpu, wf), wg = cxrtest::vector_weight(*p.gpu, wf);
  const auto bc = cxrtest::vector_weight(*p.cpu, bf), bg = cxrtest::vector_weight(*p.gpu, bf);
  const auto W = [&](Backend& be) -> const Weight& { return &be == p.cpu.get() ? *wc : *wg; };
  const auto B = [&](Backend& be) -> const Weight& { return &be == p.cpu.get() ? *bc : *bg; };
  CHECK(compare(p, n * dim, {x}, [&](Backend& be, std::vector<float*>& d, float* o) { be.rmsnorm(d[0], W(be), n, dim, 1e-5f, o); }) < 1e-5);
  CHECK(compare(p, n * dim, {x}, [&](Backend& be, std::vector<float*>& d, float* o) { be.layernorm(d[0], W(be), B(be), n, dim, 1e-5f, o); }) < 1e-4);
  // fused residual steps: out written over y, and x keeps the sum
  CHECK(compare(p, n * dim, {x, y}, [&](Backend& be, std::vector<float*>& d, float* o) {
          be.add_rmsnorm(d[0], d[1], W(be), n, dim, 1e-5f, d[1]);
          be.add(d[1], d[0], n * dim);
          be.add(o, d[1], n * dim);
        }) < 1e-5);
  CHECK(compare(p, n * dim, {x, y}, [&](Backend& be, std::vector<float*>& d, float* o) {
          be.add_layernorm(d[0], d[1], W(be), B(be), n, dim, 1e-5f, d[1]);
          be.add(d[1], d[0], n * dim);
          be.add(o, d[1], n * dim);
        }) < 1e-4);
  CHECK(compare(p, n * dim, {x}, [&](Backend& be, std::vector<float*>& d, float* o) {
          be.rope(d[0], n, 8, 128, 1093, 10000.0f);
          be.add(o, d[0], n * dim);
        }) < 1e-5);
  CHECK(compare(p, n * dim, {x, y}, [&](Backend& be, std::vector<float*>& d, float* o) {
          be.silu_mul(d[0], d[1], n * dim);
          be.gelu(d[1], n * dim);
          be.add(d[0], d[1], n * dim);
          be.add(o, d[0], n * dim);
        }) < 1e-5);
  // f16 KV store, read back through attention over one key (softmax of one = that value)
  CHECK(compare(p, 2 * 64, {randn(2 * 64, 9), randn(2 * 64, 10)}, [&](Backend& be, std::vector<float*>& d, float* o) {
          void* k = be.alloc_bytes(4 * 64 * 2), *v = be.alloc_bytes(4 * 64 * 2);
          be.store_rows(k, DType::F16, 2, d[0], 2, 64);
          be.store_rows(v, DType::F16, 2, d[1], 2, 64);
          AttentionArgs a{d[0], k, v, DType::F16, o, 2, 4, 2, 1, 1, 64, true, 0.125f};
          be.attention(a);
          be.sync();
          be.free_bytes(k);
          be.free_bytes(v);
        }) < 1e-3);
}

TEST(cuda_conformance_attention_prefill_decode_vision) {
  Pair p;
  if (!backends(&p)) return;
  struct Case {
    int64_t n, n_kv, pos0;
    int heads, kv_heads, hd;
    bool causal;
    DType kv;
  };
  const Case cases[] = {
      {1, 1100, 1099, 32, 32, 128, true, DType::F16},   // decode after 1100 positions: split-K
      {3, 600, 597, 8, 2, 128, true, DType::F32},       // a few rows, GQA
      {70, 70, 0, 8, 2, 64, true, DType::F16},          // prefill from empty
      {37, 137, 100, 4, 4, 128, true, DType::F32},      // a chunk after cached positions
      {1025, 1025, 0, 16, 16, 64, false, DType::F32},   // the ViT: every token sees every token
      {9, 9, 0, 4, 4, 16, false, DType::F32},           // head_dim below a warp
  };
  for (const Case& c : cases) {
    const int64_t qw = static_cast<int64_t>(c.heads) * c.hd, kvw = static_cast<int64_t>(c.kv_heads) * c.hd;
    const auto q = randn(c.n * qw, 1, 1.0f), kf = randn(c.n_kv * kvw, 2, 1.0f), vf = randn(c.n_kv * kvw, 3);
    const double e = compare(p, c.n * qw, {q, kf, vf}, [&](Backend& be, std::vector<float*>& d, float* o) {
      void* k = d[1];
      void* v = d[2];
      void* k16 = nullptr;
      void* v16 = nullptr;
      if (c.kv == DType::F16) {
        k = k16 = be.alloc_bytes(c.n_kv * kvw * 2);
        v = v16 = be.alloc_bytes(c.n_kv * kvw * 2);
        be.store_rows(k16, DType::F16, 0, d[1], c.n_kv, kvw);
        be.store_rows(v16, DType::F16, 0, d[2], c.n_kv, kvw);
      }
      AttentionArgs a{d[0], k, v, c.kv, o, c.n, c.n_kv, c.pos0, c.heads, c.kv_heads, c.hd, c.causal,
                      1.0f / std::sqrt(static_cast<float>(c.hd))};
      be.attention(a);
      be.sync();
      if (k16) be.free_bytes(k16);
      if (v16) be.free_bytes(v16);
    });
    if (!(e < 1e-4)) std::fprintf(stderr, "  attention n=%lld n_kv=%lld: rel err %.3g\n", static_cast<long long>(c.n), static_cast<long long>(c.n_kv), e);
    CHECK(e < 1e-4);
  }
}
