// conformance.cpp - the cases of the seam's conformance suite (conformance.h).
//
// Every case builds its inputs on the host, moves them in with from_host /
// ids_from_host / upload, runs the op, reads the result back with to_host /
// ids_to_host, and compares it with a reference computed here in double (or,
// for data movement, exactly). The tolerances are named below, with why each
// is what it is; a case that fails prints the op, the type, the shape, the
// error measured and the tolerance's name.
#include "backend/conformance/conformance.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "support/data.h"
#include "support/weights.h"
#include "types/error.h"
#include "types/quants.h"

namespace cxrtest {
namespace conformance {
namespace {

using cxr::Backend;
using cxr::DType;
using cxr::Weight;
using cxr::WeightUse;

// --- named tolerances --------------------------------------------------------
struct Tolerance {
  const char* name;
  double value;
};

// Data movement (im2col, add_broadcast, store_rows, get_rows of float types,
// argmax, top-k, add): bit for bit.
constexpr Tolerance kExact{"exact", 0.0};
// get_rows of a block type: the reference converter's values; a kernel may
// fuse d·q - m into one FMA, one rounding fewer.
constexpr Tolerance kDequant{"dequant (relative to the row's largest value)", 1e-6};
// matmul, as |y - ref| / Σ|w·x| per element (so the bound does not depend on
// the data's scale or on cancellation). F32 weights: float accumulation.
constexpr Tolerance kMatmulF32{"matmul f32 (float sums)", 2e-6};
// F16 / BF16 weights: activations may be rounded to the weight's type for
// the dot (CPU vec_dot; CUDA's f16 tensor cores): 2^-11 and 2^-8 a term.
constexpr Tolerance kMatmulF16{"matmul f16 (activations rounded to f16)", 1e-3};
constexpr Tolerance kMatmulBF16{"matmul bf16 (activations rounded to bf16)", 8e-3};
// Block types: activations quantized to 8 bits per block of 32 or 256 values
// (Q8_0 / Q8_K on the CPU, block_a8 on CUDA): up to half a step (1/254 of the
// block's largest value) a term, relative to the sum of magnitudes.
constexpr Tolerance kMatmulQ8Acts{"matmul block types (8-bit activations)", 1e-2};
// Norms: float sums over a few thousand terms, a few float ulps of an O(1) result.
constexpr Tolerance kNorm{"norm (relative to 1 + |ref|)", 4e-6};
// LayerNorm of values near 300 with a spread of 0.5: the mean, held in float,
// is off by up to 300·2^-24 ≈ 1.8e-5, which 1/σ ≈ 2 and |w| (up to ~4) scale.
constexpr Tolerance kNormLargeMean{"layernorm, large mean (relative to 1 + |ref|)", 3e-4};
// RoPE: the angle is rounded to float as in the reference model, so the error
// grows with the position: abs + per_pos · pos · (|a| + |c|).
constexpr Tolerance kRope{"rope (1e-5 + 2.5e-7 · pos · |pair|)", 1.0};
// SiLU·up: an exp (a polynomial in SIMD code) and a division: a few ulps each.
constexpr Tolerance kSilu{"silu_mul (relative)", 3e-6};
// Exact GELU: erf to ~1e-7 absolute scaled by |x|/2, plus the product's rounding.
constexpr Tolerance kGelu{"gelu (1e-7·|x| + 2.4e-7·|ref|)", 1.0};
// Attention, relative to the largest |v|: float softmax and sums over up to
// 1100 keys, merged across tiles; F16 caches are compared with the reference
// on the same f16-rounded keys and values.
constexpr Tolerance kAttention{"attention (relative to max |v|)", 5e-5};

bool verbose() {
  static const bool v = [] {
    const char* e = std::getenv("CXR_CONFORMANCE_VERBOSE");
    return e && *e && std::strcmp(e, "0") != 0;
  }();
  return v;
}

const DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0,
                              DType::Q4_0, DType::Q4_K, DType::Q6_K};

const Tolerance& matmul_tol(DType t) {
  switch (t) {
    case DType::F32: return kMatmulF32;
    case DType::F16: return kMatmulF16;
    case DType::BF16: return kMatmulBF16;
    default: return kMatmulQ8Acts;
  }
}

const char* use_name(WeightUse u) {
  switch (u) {
    case WeightUse::Matmul: return "Matmul";
    case WeightUse::MatmulBatch: return "MatmulBatch";
    case WeightUse::Rows: return "Rows";
    case WeightUse::Vector: return "Vector";
  }
  return "?";
}

float f16_round(float x) { return cxr::fp16_to_fp32(cxr::fp32_to_fp16(x)); }

class Suite {
 public:
  Suite(Backend& be, bool quiet) : be_(be), quiet_(quiet) {}
  Result result() const { return r_; }

  // A buffer in backend memory, freed with the case.
  struct Buf {
    Backend& be;
    float* p;
    size_t n;
    Buf(Backend& b, size_t count) : be(b), p(b.alloc(count)), n(count) {}
    Buf(Backend& b, const std::vector<float>& v) : Buf(b, v.size()) { b.from_host(p, v.data(), v.size()); }
    ~Buf() { be.free(p); }
    Buf(const Buf&) = delete;
    Buf& operator=(const Buf&) = delete;
    std::vector<float> get() const {
      std::vector<float> v(n);
      be.sync();
      be.to_host(v.data(), p, n);
      return v;
    }
  };
  struct Ids {
    Backend& be;
    int32_t* p;
    size_t n;
    Ids(Backend& b, const std::vector<int32_t>& v) : be(b), p(b.alloc_ids(v.size())), n(v.size()) {
      b.ids_from_host(p, v.data(), v.size());
    }
    Ids(Backend& b, size_t count) : be(b), p(b.alloc_ids(count)), n(count) {}
    ~Ids() { be.free_ids(p); }
    Ids(const Ids&) = delete;
    Ids& operator=(const Ids&) = delete;
    std::vector<int32_t> get() const {
      std::vector<int32_t> v(n);
      be.sync();
      be.ids_to_host(v.data(), p, n);
      return v;
    }
  };

  // Records one case: `err` (a measured error, NaN counts as a failure) within `tol`.
  void check(const std::string& what, double err, const Tolerance& tol) {
    ++r_.cases;
    const bool ok = err <= tol.value;
    if (!ok) ++r_.failed;
    if ((!ok && !quiet_) || verbose())
      std::fprintf(ok ? stdout : stderr, "  %sconformance %s %s: error %.3g, tolerance %s = %.3g\n",
                   ok ? "# " : "", be_.name(), what.c_str(), err, tol.name, tol.value);
  }
  void check_true(const std::string& what, bool cond) { check(what, cond ? 0.0 : 1.0, kExact); }
  void skip(const std::string& what) {
    ++r_.skipped;
    std::printf("# conformance %s: %s skipped (not supported)\n", be_.name(), what.c_str());
  }

  void upload_and_supports();
  void matmul();
  void matmul_batch();
  void get_rows();
  void norms();
  void rope();
  void activations_and_adds();
  void vision_ops();
  void store_rows();
  void attention();
  void kv_cache();
  void sampling();

 private:
  // Type t's bytes for a [rows, cols] matrix quantized from w, and the
  // reference converter's values of those bytes.
  static std::vector<uint8_t> quantize(DType t, const std::vector<float>& w, int64_t rows, int64_t cols,
                                       std::vector<float>* deq) {
    std::vector<uint8_t> q(cxr::dtype_row_bytes(t, cols) * rows);
    cxr::quantize_weights(t, w.data(), q.data(), rows, cols);
    deq->resize(static_cast<size_t>(rows * cols));
    cxr::type_traits_reference(t).to_float(q.data(), deq->data(), rows * cols);
    return q;
  }
  bool supported(cxr::Op op, DType t, const std::string& what) {
    if (be_.supports(op, t)) return true;
    skip(what);
    return false;
  }

  Backend& be_;
  bool quiet_;
  Result r_;
};

std::string shape(int64_t a, int64_t b, int64_t c = -1) {
  std::string s = "[" + std::to_string(a) + ", " + std::to_string(b);
  if (c >= 0) s += ", " + std::to_string(c);
  return s + "]";
}

// max |got - ref| / den[i]
double worst(const std::vector<float>& got, const std::vector<double>& ref, const std::vector<double>& den) {
  double w = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double e = std::fabs(static_cast<double>(got[i]) - ref[i]) / den[i];
    if (!(e <= w)) w = std::isnan(e) ? INFINITY : e;
  }
  return w;
}

// Relative to 1 + |ref|.
double worst_rel1(const std::vector<float>& got, const std::vector<double>& ref) {
  std::vector<double> den(ref.size());
  for (size_t i = 0; i < ref.size(); ++i) den[i] = 1 + std::fabs(ref[i]);
  return worst(got, ref, den);
}

double worst_exact(const std::vector<float>& got, const std::vector<float>& ref) {
  if (got.size() != ref.size()) return INFINITY;
  double w = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    if (std::memcmp(&got[i], &ref[i], sizeof(float)) != 0) w = std::max(w, std::fabs(double(got[i]) - ref[i]) + 1e-30);
  return w;
}

// --- upload and supports --------------------------------------------------------
void Suite::upload_and_supports() {
  const int64_t rows = 4, cols = 256;
  const std::vector<float> w = randn(rows * cols, 90);
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K, DType::Q8_K}) {
    std::vector<uint8_t> bytes(cxr::dtype_row_bytes(t, cols) * rows, 0);
    if (t != DType::Q8_K) cxr::quantize_weights(t, w.data(), bytes.data(), rows, cols);
    const std::string name = std::string("conformance.") + cxr::dtype_name(t);
    const std::string want = "tensor " + name + " has type " + cxr::dtype_name(t) + ", which the " + be_.name() +
                             " backend cannot run matmul on";
    for (WeightUse u : {WeightUse::Matmul, WeightUse::MatmulBatch, WeightUse::Rows}) {
      const std::string what = std::string("upload ") + cxr::dtype_name(t) + " for " + use_name(u);
      if (be_.supports(cxr::Op::Matmul, t)) {
        auto wt = matrix_weight(be_, t, rows, cols, bytes.data(), u, name);
        check_true(what + ": the weight keeps its shape and type",
                   wt && wt->rows == rows && wt->cols == cols && wt->type == t && wt->use == u && wt->name == name);
        continue;
      }
      // Refused at upload, with a sentence naming the tensor, its type and the backend.
      std::string msg;
      try {
        matrix_weight(be_, t, rows, cols, bytes.data(), u, name);
      } catch (const cxr::EngineError& e) {
        msg = e.code() == cxr::err::kModel ? e.what() : "";
      }
      check_true(what + ": refused with \"" + want + "\"", msg == want);
    }
  }
  // Vectors arrive as F32 whatever the file held: an F16 vector reads back as
  // its values through add_broadcast (out = w).
  std::vector<float> v = randn(2 * 40, 91);
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = cxr::fp32_to_fp16(v[i]);
  cxr::TensorView tv;
  tv.name = "conformance.vector.f16";
  tv.type = DType::F16;
  tv.rows = 2;
  tv.cols = 40;
  tv.data = h.data();
  auto vw = be_.upload(tv, WeightUse::Vector);
  Buf out(be_, 2 * 40);
  be_.add_broadcast(out.p, nullptr, *vw, 2);
  std::vector<float> ref(v.size());
  for (size_t i = 0; i < v.size(); ++i) ref[i] = cxr::fp16_to_fp32(h[i]);
  check_true("upload f16 Vector: F32 type", vw->type == DType::F32 && vw->use == WeightUse::Vector);
  check("upload f16 Vector: values", worst_exact(out.get(), ref), kExact);
}

// --- matmul -----------------------------------------------------------------------
void Suite::matmul() {
  struct Shape {
    int64_t rows, cols, n;
    bool bias;
  };
  // One row of weights, odd row counts (no whole row groups), many rows and
  // few; 1 token, a few (decode kernels), 9+ (panels / tensor cores).
  const Shape shapes[] = {{1, 256, 1, false},  {13, 256, 3, true},  {64, 512, 8, false},
                          {67, 256, 9, true},  {192, 512, 37, false}, {64, 256, 130, true}};
  for (DType t : kWeightTypes) {
    if (!supported(cxr::Op::Matmul, t, std::string("matmul ") + cxr::dtype_name(t))) continue;
    for (const Shape& s : shapes) {
      const std::vector<float> wf = randn(s.rows * s.cols, 100 + static_cast<uint32_t>(s.rows), 0.5f);
      std::vector<float> wd;
      const std::vector<uint8_t> q = quantize(t, wf, s.rows, s.cols, &wd);
      const std::vector<float> x = randn(s.n * s.cols, 200 + static_cast<uint32_t>(s.n));
      const std::vector<float> b = randn(s.rows, 300);
      std::vector<double> ref(s.n * s.rows), mag(s.n * s.rows);
      for (int64_t i = 0; i < s.n; ++i)
        for (int64_t r = 0; r < s.rows; ++r) {
          double acc = 0, m = 0;
          for (int64_t k = 0; k < s.cols; ++k) {
            const double p = static_cast<double>(wd[r * s.cols + k]) * x[i * s.cols + k];
            acc += p;
            m += std::fabs(p);
          }
          ref[i * s.rows + r] = acc + (s.bias ? b[r] : 0.0);
          mag[i * s.rows + r] = m + 1e-30;
        }
      Buf dx(be_, x);
      const auto bias = s.bias ? vector_weight(be_, b, 1, "conformance.bias") : nullptr;
      for (WeightUse u : {WeightUse::Matmul, WeightUse::MatmulBatch, WeightUse::Rows}) {
        // Every use gets bytes of its own: a backend may rearrange or release them.
        const std::vector<uint8_t> own = q;
        const auto W = matrix_weight(be_, t, s.rows, s.cols, own.data(), u);
        Buf y(be_, s.n * s.rows);
        be_.matmul(*W, dx.p, s.n, y.p, bias.get());
        check(std::string("matmul ") + cxr::dtype_name(t) + " " + use_name(u) + " W" + shape(s.rows, s.cols) +
                  " n=" + std::to_string(s.n) + (s.bias ? " +bias" : ""),
              worst(y.get(), ref, mag), matmul_tol(t));
      }
    }
  }
}

// matmul_batch: decode rows first, then prompt rows; each row's result within
// the type's tolerance, and bit for bit the row's result alone of its kind.
void Suite::matmul_batch() {
  const int64_t rows = 72, cols = 256, n = 11;
  for (DType t : kWeightTypes) {
    if (!be_.supports(cxr::Op::Matmul, t)) continue;  // skipped (and said) in matmul()
    const std::vector<float> wf = randn(rows * cols, 400, 0.5f);
    std::vector<float> wd;
    const std::vector<uint8_t> q = quantize(t, wf, rows, cols, &wd);
    const std::vector<float> x = randn(n * cols, 401);
    std::vector<double> ref(n * rows), mag(n * rows);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t r = 0; r < rows; ++r) {
        double acc = 0, m = 0;
        for (int64_t k = 0; k < cols; ++k) {
          const double p = static_cast<double>(wd[r * cols + k]) * x[i * cols + k];
          acc += p;
          m += std::fabs(p);
        }
        ref[i * rows + r] = acc;
        mag[i * rows + r] = m + 1e-30;
      }
    const auto W = matrix_weight(be_, t, rows, cols, q.data(), WeightUse::Rows);
    Buf dx(be_, x);
    std::vector<float> alone_dec(n * rows), alone_prompt(n * rows);
    for (int64_t i = 0; i < n; ++i) {
      Buf y1(be_, rows), y2(be_, rows);
      be_.matmul_batch(*W, dx.p + i * cols, 1, 0, y1.p);
      be_.matmul_batch(*W, dx.p + i * cols, 0, 1, y2.p);
      const auto a = y1.get(), b = y2.get();
      std::copy(a.begin(), a.end(), alone_dec.begin() + i * rows);
      std::copy(b.begin(), b.end(), alone_prompt.begin() + i * rows);
    }
    for (int64_t n_dec : {0, 3, 11}) {
      Buf y(be_, n * rows);
      be_.matmul_batch(*W, dx.p, n_dec, n - n_dec, y.p);
      const std::vector<float> got = y.get();
      const std::string what = std::string("matmul_batch ") + cxr::dtype_name(t) + " W" + shape(rows, cols) +
                               " decode " + std::to_string(n_dec) + " + prompt " + std::to_string(n - n_dec);
      check(what, worst(got, ref, mag), matmul_tol(t));
      std::vector<float> want(n * rows);
      for (int64_t i = 0; i < n; ++i)
        std::copy_n((i < n_dec ? alone_dec : alone_prompt).begin() + i * rows, rows, want.begin() + i * rows);
      check(what + ": rows as alone", worst_exact(got, want), kExact);
    }
  }
}

// --- get_rows ----------------------------------------------------------------------
void Suite::get_rows() {
  for (DType t : kWeightTypes) {
    if (!supported(cxr::Op::GetRows, t, std::string("get_rows ") + cxr::dtype_name(t))) continue;
    for (int64_t rows : {1, 13, 96}) {
      const int64_t cols = 512;
      const std::vector<float> wf = randn(rows * cols, 500 + static_cast<uint32_t>(rows));
      std::vector<float> wd;
      const std::vector<uint8_t> q = quantize(t, wf, rows, cols, &wd);
      const auto E = matrix_weight(be_, t, rows, cols, q.data(), WeightUse::Rows);
      const std::vector<int32_t> ids = {static_cast<int32_t>(rows - 1), 0, static_cast<int32_t>(rows / 2),
                                        static_cast<int32_t>(rows - 1)};
      Ids di(be_, ids);
      Buf out(be_, ids.size() * cols);
      be_.get_rows(*E, di.p, static_cast<int64_t>(ids.size()), out.p);
      const std::vector<float> got = out.get();
      const std::string what = std::string("get_rows ") + cxr::dtype_name(t) + " E" + shape(rows, cols) + " 4 ids";
      std::vector<float> want(ids.size() * cols);
      for (size_t i = 0; i < ids.size(); ++i) std::copy_n(wd.begin() + ids[i] * cols, cols, want.begin() + i * cols);
      if (t == DType::F32 || t == DType::F16 || t == DType::BF16) {
        check(what, worst_exact(got, want), kExact);
      } else {
        double m = 1e-30, e = 0;
        for (float v : want) m = std::max(m, std::fabs(static_cast<double>(v)));
        for (size_t i = 0; i < want.size(); ++i) e = std::max(e, std::fabs(double(got[i]) - want[i]));
        check(what, std::isnan(e) ? INFINITY : e / m, kDequant);
      }
      // An id outside the table is refused, naming it.
      Ids bad(be_, std::vector<int32_t>{static_cast<int32_t>(rows)});
      bool threw = false;
      try {
        be_.get_rows(*E, bad.p, 1, out.p);
        be_.sync();
      } catch (const cxr::EngineError& ex) {
        threw = std::string(ex.what()).find(std::to_string(rows)) != std::string::npos;
      }
      check_true(what + ": id " + std::to_string(rows) + " refused", threw);
    }
  }
}

// --- norms -------------------------------------------------------------------------
void Suite::norms() {
  for (int64_t dim : {7, 1000, 4096 + 24}) {
    for (int64_t n : {1, 5}) {
      const std::vector<float> x = randn(n * dim, 600 + static_cast<uint32_t>(dim), 2.0f);
      const std::vector<float> y = randn(n * dim, 601);
      const std::vector<float> wv = randn(dim, 602), bv = randn(dim, 603);
      const auto w = vector_weight(be_, wv), b = vector_weight(be_, bv);
      const std::string sh = shape(n, dim);
      // rmsnorm and add_rmsnorm
      std::vector<double> rms(n * dim), ln(n * dim), s(n * dim), rms_s(n * dim), ln_s(n * dim);
      auto rms_ref = [&](const std::vector<double>& v, std::vector<double>* o) {
        for (int64_t t = 0; t < n; ++t) {
          double ss = 0;
          for (int64_t i = 0; i < dim; ++i) ss += v[t * dim + i] * v[t * dim + i];
          const double r = 1.0 / std::sqrt(ss / dim + 1e-5);
          for (int64_t i = 0; i < dim; ++i) (*o)[t * dim + i] = v[t * dim + i] * r * wv[i];
        }
      };
      auto ln_ref = [&](const std::vector<double>& v, std::vector<double>* o) {
        for (int64_t t = 0; t < n; ++t) {
          double mean = 0, var = 0;
          for (int64_t i = 0; i < dim; ++i) mean += v[t * dim + i];
          mean /= dim;
          for (int64_t i = 0; i < dim; ++i) var += (v[t * dim + i] - mean) * (v[t * dim + i] - mean);
          const double r = 1.0 / std::sqrt(var / dim + 1e-5);
          for (int64_t i = 0; i < dim; ++i) (*o)[t * dim + i] = (v[t * dim + i] - mean) * r * wv[i] + bv[i];
        }
      };
      std::vector<double> xd(x.begin(), x.end());
      std::vector<float> sf(n * dim);
      for (int64_t i = 0; i < n * dim; ++i) {
        sf[i] = x[i] + y[i];  // the residual sum, in float as a backend keeps it
        s[i] = sf[i];
      }
      rms_ref(xd, &rms);
      ln_ref(xd, &ln);
      rms_ref(s, &rms_s);
      ln_ref(s, &ln_s);
      {
        Buf dx(be_, x), o(be_, n * dim);
        be_.rmsnorm(dx.p, *w, n, dim, 1e-5f, o.p);
        check("rmsnorm " + sh, worst_rel1(o.get(), rms), kNorm);
        be_.layernorm(dx.p, *w, *b, n, dim, 1e-5f, o.p);
        check("layernorm " + sh, worst_rel1(o.get(), ln), kNorm);
      }
      for (bool over_y : {false, true}) {
        // The fused residual steps: x keeps x + y; out may be y itself.
        const std::string how = over_y ? " (out = y)" : "";
        Buf dx(be_, x), dy(be_, y), o(be_, n * dim);
        be_.add_rmsnorm(dx.p, dy.p, *w, n, dim, 1e-5f, over_y ? dy.p : o.p);
        check("add_rmsnorm " + sh + how + ": x + y", worst_exact(dx.get(), sf), kExact);
        check("add_rmsnorm " + sh + how, worst_rel1((over_y ? dy : o).get(), rms_s), kNorm);
        Buf dx2(be_, x), dy2(be_, y);
        be_.add_layernorm(dx2.p, dy2.p, *w, *b, n, dim, 1e-5f, over_y ? dy2.p : o.p);
        check("add_layernorm " + sh + how + ": x + y", worst_exact(dx2.get(), sf), kExact);
        check("add_layernorm " + sh + how, worst_rel1((over_y ? dy2 : o).get(), ln_s), kNorm);
      }
    }
  }
  // LayerNorm with a mean far from zero: a one-pass E[x²] - E[x]² would lose the variance.
  for (int64_t dim : {77, 1024}) {
    const int64_t n = 3;
    const std::vector<float> x = randn(n * dim, 610, 0.5f, 300.0f), wv = randn(dim, 611), bv = randn(dim, 612);
    const auto w = vector_weight(be_, wv), b = vector_weight(be_, bv);
    std::vector<double> ref(n * dim);
    for (int64_t t = 0; t < n; ++t) {
      double mean = 0, var = 0;
      for (int64_t i = 0; i < dim; ++i) mean += x[t * dim + i];
      mean /= dim;
      for (int64_t i = 0; i < dim; ++i) var += (x[t * dim + i] - mean) * (x[t * dim + i] - mean);
      const double r = 1.0 / std::sqrt(var / dim + 1e-5);
      for (int64_t i = 0; i < dim; ++i) ref[t * dim + i] = (x[t * dim + i] - mean) * r * wv[i] + bv[i];
    }
    Buf dx(be_, x), o(be_, n * dim);
    be_.layernorm(dx.p, *w, *b, n, dim, 1e-5f, o.p);
    check("layernorm large mean " + shape(n, dim), worst_rel1(o.get(), ref), kNormLargeMean);
  }
}

// --- rope ----------------------------------------------------------------------------
void Suite::rope() {
  for (int head_dim : {128, 64, 12}) {
    const int heads = 3;
    const int64_t n = 6, width = static_cast<int64_t>(heads) * head_dim;
    const std::vector<float> x = randn(n * width, 700 + static_cast<uint32_t>(head_dim));
    auto ref_err = [&](const std::vector<float>& got, const std::vector<int64_t>& pos) {
      double w = 0;
      for (int64_t t = 0; t < n; ++t)
        for (int h = 0; h < heads; ++h)
          for (int i = 0; i < head_dim / 2; ++i) {
            const double ang = pos[t] * std::pow(10000.0, -2.0 * i / head_dim);
            const size_t at = (t * heads + h) * head_dim + 2 * i;
            const double a = x[at], c = x[at + 1];
            const double ra = a * std::cos(ang) - c * std::sin(ang), rc = a * std::sin(ang) + c * std::cos(ang);
            const double tol = 1e-5 + 2.5e-7 * pos[t] * (std::fabs(a) + std::fabs(c));
            for (double e : {std::fabs(got[at] - ra), std::fabs(got[at + 1] - rc)}) {
              const double r = e / tol;
              if (!(r <= w)) w = std::isnan(r) ? INFINITY : r;
            }
          }
      return w;
    };
    for (int64_t pos0 : {0, 1000}) {
      Buf dx(be_, x);
      be_.rope(dx.p, n, heads, head_dim, pos0, 10000.0f);
      std::vector<int64_t> pos(n);
      for (int64_t t = 0; t < n; ++t) pos[t] = pos0 + t;
      check("rope head_dim " + std::to_string(head_dim) + " " + shape(n, width) + " pos0 " + std::to_string(pos0),
            ref_err(dx.get(), pos), kRope);
    }
    // Rows at positions of their own (several sequences in one batch).
    const std::vector<int32_t> p32 = {5, 0, 1001, 6, 7, 2};
    Buf dx(be_, x);
    be_.rope_rows(dx.p, n, heads, head_dim, p32.data(), 10000.0f);
    check("rope_rows head_dim " + std::to_string(head_dim) + " " + shape(n, width),
          ref_err(dx.get(), std::vector<int64_t>(p32.begin(), p32.end())), kRope);
  }
}

// --- activations, adds --------------------------------------------------------------------
void Suite::activations_and_adds() {
  for (int64_t count : {1, 13, 11008 + 5}) {
    std::vector<float> g = randn(count, 800 + static_cast<uint32_t>(count), 4.0f);
    if (count > 3) {
      g[0] = -100.0f;  // e^100 saturates: the result must still be ~0, not NaN
      g[1] = 90.0f;
      g[2] = 0.0f;
    }
    const std::vector<float> u = randn(count, 801);
    {
      Buf dg(be_, g), du(be_, u);
      be_.silu_mul(dg.p, du.p, count);
      std::vector<double> ref(count), den(count);
      for (int64_t i = 0; i < count; ++i) {
        ref[i] = g[i] / (1.0 + std::exp(-static_cast<double>(g[i]))) * u[i];
        den[i] = std::fabs(ref[i]) + 1e-30;
      }
      check("silu_mul n=" + std::to_string(count), worst(dg.get(), ref, den), kSilu);
    }
    {
      Buf dx(be_, g), dy(be_, u);
      be_.add(dx.p, dy.p, count);
      std::vector<float> ref(count);
      for (int64_t i = 0; i < count; ++i) ref[i] = g[i] + u[i];
      check("add n=" + std::to_string(count), worst_exact(dx.get(), ref), kExact);
    }
  }
  // GELU dense over [-8, 8] (every piece of an erf approximation, both signs) plus random values.
  std::vector<float> x;
  for (int i = -80000; i <= 80000; i += 7) x.push_back(i * 1e-4f);
  const std::vector<float> r = randn(1001, 802, 3.0f);
  x.insert(x.end(), r.begin(), r.end());
  Buf dx(be_, x);
  be_.gelu(dx.p, static_cast<int64_t>(x.size()));
  std::vector<double> ref(x.size()), den(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    ref[i] = 0.5 * x[i] * (1.0 + std::erf(x[i] / std::sqrt(2.0)));
    den[i] = 1e-7 * std::fabs(x[i]) + 2.4e-7 * std::fabs(ref[i]) + 1e-30;
  }
  check("gelu n=" + std::to_string(x.size()), worst(dx.get(), ref, den), kGelu);
}

// --- the vision tower's ops -------------------------------------------------------------------
void Suite::vision_ops() {
  struct Im {
    int channels;
    int64_t size;
    int patch;
  };
  for (const Im& m : {Im{1, 16, 16}, Im{2, 12, 4}, Im{3, 35, 7}}) {
    const std::vector<float> px = randn(m.channels * m.size * m.size, 900 + static_cast<uint32_t>(m.size));
    const int64_t g = m.size / m.patch, row = static_cast<int64_t>(m.channels) * m.patch * m.patch;
    Buf dp(be_, px), out(be_, g * g * row);
    be_.im2col(dp.p, m.channels, m.size, m.patch, out.p);
    std::vector<float> ref(g * g * row);
    for (int64_t gy = 0; gy < g; ++gy)
      for (int64_t gx = 0; gx < g; ++gx)
        for (int ch = 0; ch < m.channels; ++ch)
          for (int ky = 0; ky < m.patch; ++ky)
            for (int kx = 0; kx < m.patch; ++kx)
              ref[(gy * g + gx) * row + (ch * m.patch + ky) * m.patch + kx] =
                  px[(ch * m.size + gy * m.patch + ky) * m.size + gx * m.patch + kx];
    check("im2col " + std::to_string(m.channels) + "x" + std::to_string(m.size) + "² patch " + std::to_string(m.patch),
          worst_exact(out.get(), ref), kExact);
  }
  // add_broadcast: rows of w repeat every w.rows rows; without x, out = w's rows.
  for (int64_t wrows : {1, 3}) {
    const int64_t width = 37, n = 7;
    const std::vector<float> wv = randn(wrows * width, 910), x = randn(n * width, 911, 10.0f);
    const auto w = vector_weight(be_, wv, wrows);
    std::vector<float> ref(n * width), copy(n * width);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t i = 0; i < width; ++i) {
        ref[r * width + i] = x[r * width + i] + wv[(r % wrows) * width + i];
        copy[r * width + i] = wv[(r % wrows) * width + i];
      }
    Buf dx(be_, x), o(be_, n * width);
    be_.add_broadcast(o.p, dx.p, *w, n);
    check("add_broadcast w" + shape(wrows, width) + " n=" + std::to_string(n), worst_exact(o.get(), ref), kExact);
    be_.add_broadcast(dx.p, dx.p, *w, n);
    check("add_broadcast in place w" + shape(wrows, width), worst_exact(dx.get(), ref), kExact);
    be_.add_broadcast(o.p, nullptr, *w, n);
    check("add_broadcast without x w" + shape(wrows, width), worst_exact(o.get(), copy), kExact);
  }
}

// --- KV rows: store_rows, read back through attention over one key ------------------------------
void Suite::store_rows() {
  for (DType t : {DType::F32, DType::F16}) {
    if (!supported(cxr::Op::StoreRows, t, std::string("store_rows ") + cxr::dtype_name(t))) continue;
    for (int64_t width : {64, 100}) {
      // Row 2 of a 4-row cache; softmax over that single key is 1, so the
      // output is the stored value as the backend reads it.
      const std::vector<float> k = randn(width, 950), v = randn(width, 951, 3.0f);
      const size_t es = t == DType::F32 ? 4 : 2;
      void* kc = be_.alloc_bytes(4 * width * es);
      void* vc = be_.alloc_bytes(4 * width * es);
      Buf dk(be_, k), dv(be_, v), o(be_, width);
      be_.store_rows(kc, t, 2, dk.p, 1, width);
      be_.store_rows(vc, t, 2, dv.p, 1, width);
      cxr::AttentionArgs a{};
      a.q = dk.p;
      a.k = static_cast<const uint8_t*>(kc) + 2 * width * es;
      a.v = static_cast<const uint8_t*>(vc) + 2 * width * es;
      a.kv_type = t;
      a.out = o.p;
      a.n = 1;
      a.n_kv = 1;
      a.pos0 = 0;
      a.n_heads = 1;
      a.n_kv_heads = 1;
      a.head_dim = static_cast<int>(width);
      a.causal = true;
      a.scale = 0.125f;
      be_.attention(a);
      std::vector<float> ref(v);
      if (t == DType::F16)
        for (float& f : ref) f = f16_round(f);
      check(std::string("store_rows ") + cxr::dtype_name(t) + " width " + std::to_string(width), worst_exact(o.get(), ref),
            kExact);
      be_.sync();
      be_.free_bytes(kc);
      be_.free_bytes(vc);
    }
  }
}

// Reference attention for one query row at position qpos over keys 0 .. n_kv
// (causal: 0 .. qpos), grouped heads; k, v [n_kv, kv_heads * hd] as stored.
void attention_ref(const float* q, const std::vector<float>& k, const std::vector<float>& v, int64_t n_kv, int64_t qpos,
                   bool causal, int heads, int kv_heads, int hd, float scale, double* out) {
  const int group = heads / kv_heads;
  const int64_t kvw = static_cast<int64_t>(kv_heads) * hd;
  const int64_t last = causal ? std::min(qpos + 1, n_kv) : n_kv;
  std::vector<double> s(last);
  for (int h = 0; h < heads; ++h) {
    const int kh = h / group;
    double mx = -INFINITY;
    for (int64_t j = 0; j < last; ++j) {
      double d = 0;
      for (int i = 0; i < hd; ++i) d += static_cast<double>(q[h * hd + i]) * k[j * kvw + kh * hd + i];
      s[j] = d * scale;
      mx = std::max(mx, s[j]);
    }
    double sum = 0;
    for (int64_t j = 0; j < last; ++j) sum += (s[j] = std::exp(s[j] - mx));
    for (int i = 0; i < hd; ++i) {
      double o = 0;
      for (int64_t j = 0; j < last; ++j) o += s[j] * v[j * kvw + kh * hd + i];
      out[h * hd + i] = o / sum;
    }
  }
}

double max_abs(const std::vector<float>& v) {
  double m = 1e-30;
  for (float f : v) m = std::max(m, std::fabs(static_cast<double>(f)));
  return m;
}

// --- attention ------------------------------------------------------------------------------------
void Suite::attention() {
  struct Case {
    int64_t n, n_kv, pos0;
    int heads, kv_heads, hd;
    bool causal;
    DType kv;
  };
  const Case cases[] = {
      {1, 1100, 1099, 8, 8, 128, true, DType::F16},  // decode after 1100 positions (split-K on CUDA)
      {1, 1, 0, 2, 1, 64, true, DType::F32},         // the first position
      {3, 600, 597, 8, 2, 128, true, DType::F32},    // a few rows, grouped-query heads
      {70, 70, 0, 8, 2, 64, true, DType::F16},       // prefill from empty
      {37, 137, 100, 4, 4, 128, true, DType::F32},   // a chunk after cached positions
      {257, 257, 0, 4, 4, 64, false, DType::F32},    // the ViT: every token sees every token
      {9, 9, 0, 4, 4, 16, false, DType::F16},        // head_dim below a warp
  };
  for (const Case& c : cases) {
    const std::string what = std::string("attention ") + (c.causal ? "causal" : "full") + " n=" + std::to_string(c.n) +
                             " n_kv=" + std::to_string(c.n_kv) + " heads " + std::to_string(c.heads) + "/" +
                             std::to_string(c.kv_heads) + " hd " + std::to_string(c.hd) + " kv " +
                             cxr::dtype_name(c.kv);
    if (!supported(cxr::Op::Attention, c.kv, what)) continue;
    const int64_t qw = static_cast<int64_t>(c.heads) * c.hd, kvw = static_cast<int64_t>(c.kv_heads) * c.hd;
    const std::vector<float> q = randn(c.n * qw, 1000 + static_cast<uint32_t>(c.n)), kf = randn(c.n_kv * kvw, 1001),
                             vf = randn(c.n_kv * kvw, 1002);
    std::vector<float> ks = kf, vs = vf;  // as stored
    if (c.kv == DType::F16) {
      for (float& f : ks) f = f16_round(f);
      for (float& f : vs) f = f16_round(f);
    }
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
    Buf dq(be_, q), dk(be_, kf), dv(be_, vf), o(be_, c.n * qw);
    void* k = dk.p;
    void* v = dv.p;
    void* k16 = nullptr;
    void* v16 = nullptr;
    if (c.kv == DType::F16) {
      k = k16 = be_.alloc_bytes(c.n_kv * kvw * 2);
      v = v16 = be_.alloc_bytes(c.n_kv * kvw * 2);
      be_.store_rows(k16, DType::F16, 0, dk.p, c.n_kv, kvw);
      be_.store_rows(v16, DType::F16, 0, dv.p, c.n_kv, kvw);
    }
    cxr::AttentionArgs a{dq.p, k, v, c.kv, o.p, c.n, c.n_kv, c.pos0, c.heads, c.kv_heads, c.hd, c.causal, scale};
    a.decode = c.n == 1;
    be_.attention(a);
    const std::vector<float> got = o.get();
    if (k16) be_.free_bytes(k16);
    if (v16) be_.free_bytes(v16);
    std::vector<double> ref(c.n * qw);
    for (int64_t i = 0; i < c.n; ++i)
      attention_ref(q.data() + i * qw, ks, vs, c.n_kv, c.pos0 + i, c.causal, c.heads, c.kv_heads, c.hd, scale,
                    ref.data() + i * qw);
    std::vector<double> den(ref.size(), max_abs(vs));
    check(what, worst(got, ref, den), kAttention);
  }
}

// --- the KV cache: several sequences, mixed decode and prompt rows -----------------------------------
void Suite::kv_cache() {
  const int heads = 4, kv_heads = 2, hd = 64;
  const int64_t qw = heads * hd, kvw = kv_heads * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (DType t : {DType::F16, DType::F32}) {
    for (bool scattered : {false, true}) {
      const std::string what = std::string("kv_cache ") + cxr::dtype_name(t) +
                               (scattered ? " cells interleaved" : " cells in runs");
      if (!supported(cxr::Op::KvCache, t, what)) continue;
      cxr::KvCacheSpec spec;
      spec.n_layers = 2;
      spec.cells = 64;
      spec.kv_dim = kvw;
      spec.type = t;
      auto cache = be_.make_kv_cache(spec);
      check_true(what + ": bytes", cache->bytes() >= size_t{2} * 2 * 64 * kvw * (t == DType::F32 ? 4 : 2));
      // Two sequences of 9 positions: their own runs of cells, or cells that alternate.
      std::vector<int32_t> cells[2];
      for (int p = 0; p < 9; ++p) {
        cells[0].push_back(scattered ? 2 * p : p);
        cells[1].push_back(scattered ? 2 * p + 1 : 30 + p);
      }
      // All keys and values of both sequences, [9, kvw] each, and the queries.
      std::vector<float> K[2], V[2], Q[2], Ks[2], Vs[2];
      for (int s = 0; s < 2; ++s) {
        K[s] = randn(9 * kvw, 1100 + s);
        V[s] = randn(9 * kvw, 1110 + s);
        Q[s] = randn(9 * qw, 1120 + s);
        Ks[s] = K[s];
        Vs[s] = V[s];
        if (t == DType::F16) {
          for (float& f : Ks[s]) f = f16_round(f);
          for (float& f : Vs[s]) f = f16_round(f);
        }
      }
      // Pass 1: sequence 0 prompt positions 0..5, sequence 1 prompt 0..7.
      // Pass 2: sequence 0 decodes position 5 (first row), sequence 1 prompts 7..9.
      struct Part {
        int seq;
        int64_t pos0, n;
        bool decode;
      };
      const std::vector<std::vector<Part>> passes = {{{0, 0, 5, false}, {1, 0, 7, false}},
                                                     {{0, 5, 1, true}, {1, 7, 2, false}}};
      for (size_t pi = 0; pi < passes.size(); ++pi) {
        const auto& parts = passes[pi];
        int64_t rows = 0;
        for (const Part& p : parts) rows += p.n;
        std::vector<float> q(rows * qw), k(rows * kvw), v(rows * kvw);
        std::vector<cxr::SeqRows> sr;
        int64_t row = 0;
        for (const Part& p : parts) {
          std::copy_n(Q[p.seq].begin() + p.pos0 * qw, p.n * qw, q.begin() + row * qw);
          std::copy_n(K[p.seq].begin() + p.pos0 * kvw, p.n * kvw, k.begin() + row * kvw);
          std::copy_n(V[p.seq].begin() + p.pos0 * kvw, p.n * kvw, v.begin() + row * kvw);
          cxr::SeqRows s;
          s.row0 = row;
          s.n = p.n;
          s.pos0 = p.pos0;
          s.cells = cells[p.seq].data();
          s.decode = p.decode;
          sr.push_back(s);
          row += p.n;
        }
        Buf dq(be_, q), dk(be_, k), dv(be_, v), o(be_, rows * qw);
        double err = 0;
        bool threw = false;
        try {
          for (int layer = 0; layer < 2; ++layer)
            for (const cxr::SeqRows& s : sr) be_.kv_store(*cache, layer, dk.p, dv.p, s);
          be_.kv_attention(*cache, 1, dq.p, o.p, sr.data(), static_cast<int>(sr.size()), heads, kv_heads, hd, scale);
          const std::vector<float> got = o.get();
          std::vector<double> ref(rows * qw);
          for (const cxr::SeqRows& s : sr) {
            const int seq = s.cells == cells[0].data() ? 0 : 1;
            for (int64_t i = 0; i < s.n; ++i)
              attention_ref(q.data() + (s.row0 + i) * qw, Ks[seq], Vs[seq], s.pos0 + s.n, s.pos0 + i, true, heads,
                            kv_heads, hd, scale, ref.data() + (s.row0 + i) * qw);
          }
          std::vector<double> den(ref.size(), std::max(max_abs(Vs[0]), max_abs(Vs[1])));
          err = worst(got, ref, den);
        } catch (const cxr::EngineError& e) {
          if (!quiet_) std::fprintf(stderr, "  conformance %s %s: %s\n", be_.name(), what.c_str(), e.what());
          threw = true;
        }
        check(what + " pass " + std::to_string(pi + 1), threw ? INFINITY : err, kAttention);
      }
    }
  }
}

// --- sampling ops ----------------------------------------------------------------------------------
void Suite::sampling() {
  for (int64_t width : {1, 7, 32000 + 3}) {
    const int64_t n = 3;
    std::vector<float> x = randn(n * width, 1200 + static_cast<uint32_t>(width));
    if (width > 5) {
      x[1] = NAN;        // NaN counts as -inf
      x[width + 3] = x[width + 4] = 1e4f;  // a tie: the lower index wins
      x[2 * width + width - 1] = 1e5f;     // the last element
    }
    auto key = [](float f) { return std::isnan(f) ? -INFINITY : f; };
    std::vector<int32_t> want(n);
    for (int64_t r = 0; r < n; ++r) {
      int64_t best = 0;
      for (int64_t i = 1; i < width; ++i)
        if (key(x[r * width + i]) > key(x[r * width + best])) best = i;
      want[r] = static_cast<int32_t>(best);
    }
    Buf dx(be_, x);
    Ids ids(be_, n);
    be_.argmax(dx.p, n, width, ids.p);
    check_true("argmax " + shape(n, width), ids.get() == want);
    const int k = static_cast<int>(std::min<int64_t>(5, width));
    Buf vals(be_, n * k);
    Ids tids(be_, n * k);
    be_.top_k(dx.p, n, width, k, vals.p, tids.p);
    const std::vector<float> gv = vals.get();
    const std::vector<int32_t> gi = tids.get();
    bool ok = true;
    for (int64_t r = 0; r < n; ++r) {
      std::vector<int32_t> order(width);
      for (int64_t i = 0; i < width; ++i) order[i] = static_cast<int32_t>(i);
      std::stable_sort(order.begin(), order.end(),
                       [&](int32_t a, int32_t b) { return key(x[r * width + a]) > key(x[r * width + b]); });
      for (int i = 0; i < k; ++i) {
        const float wv = key(x[r * width + order[i]]);
        ok = ok && gi[r * k + i] == order[i] && std::memcmp(&gv[r * k + i], &wv, sizeof(float)) == 0;
      }
    }
    check_true("top_k k=" + std::to_string(k) + " " + shape(n, width), ok);
  }
}

}  // namespace

Result run(Backend& be, bool quiet) {
  Suite s(be, quiet);
  s.upload_and_supports();
  s.matmul();
  s.matmul_batch();
  s.get_rows();
  s.norms();
  s.rope();
  s.activations_and_adds();
  s.vision_ops();
  s.store_rows();
  s.attention();
  s.kv_cache();
  s.sampling();
  return s.result();
}

}  // namespace conformance
}  // namespace cxrtest
