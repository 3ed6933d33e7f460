// test_matmul.cpp - the CPU matmul (every route: integer panels, float panels,
// vec_dot rows; every kernel set this CPU has) against a plain reference built
// from the scalar traits table: quantize each activation row with the
// reference quantizer, then one reference vec_dot per output element.
//
// The fast routes compute the same integer block dots as the reference and
// differ only in the order of float additions, so the limit is a small
// multiple of float rounding on sum |w_k x_k|, never a loose "close enough".
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_ops.h"
#include "types/dtype.h"
#include "backend/cpu/gemm.h"
#include "types/quant_blocks.h"
#include "backend/cpu/cpu_kernels.h"
#include "types/quants.h"
#include "backend/cpu/repack.h"
#include "support/data.h"
#include "support/test.h"
#include "backend/cpu/threadpool.h"

using namespace cxr;

namespace {

// |fast - reference| <= kMatmulRelTol * sum_k |w_k * x_k| (both operands as the
// kernels see them: weights dequantized, activations after quantization).
// Float sums of 4096 terms in a different order differ by a few ulps of the
// magnitude sum; 1e-5 is ~100 float epsilons and far below any real mistake
// (a wrong block, scale or nibble moves the result by ~1e-2 of it or more).
constexpr double kMatmulRelTol = 1e-5;

struct Problem {
  DType type;
  int64_t rows, cols, n;
  bool bias;
};

struct Data {
  std::vector<uint8_t> w;  // [rows] rows of `type`
  std::vector<float> x;    // [n, cols]
  std::vector<float> b;    // [rows] or empty
};

Data make(const Problem& p, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> wf(static_cast<size_t>(p.rows * p.cols));
  for (auto& v : wf) v = nd(rng);
  Data d;
  d.w.resize(dtype_row_bytes(p.type, p.cols) * p.rows);
  quantize_weights(p.type, wf.data(), d.w.data(), p.rows, p.cols);
  d.x.resize(static_cast<size_t>(p.n * p.cols));
  for (auto& v : d.x) v = nd(rng);
  if (p.bias) {
    d.b.resize(static_cast<size_t>(p.rows));
    for (auto& v : d.b) v = nd(rng);
  }
  return d;
}

// Reference y and the magnitude sum |w_k x_k| for each output element.
void reference(const Problem& p, const Data& d, std::vector<float>* y, std::vector<double>* mag) {
  const TypeTraits& wt = type_traits_reference(p.type);
  const DType vt = wt.vec_dot_type;
  const TypeTraits& xt = type_traits_reference(vt);
  const size_t wrow = dtype_row_bytes(p.type, p.cols), xrow = dtype_row_bytes(vt, p.cols);
  std::vector<uint8_t> xq(xrow * p.n);
  std::vector<float> xdeq(static_cast<size_t>(p.n * p.cols)), wdeq(static_cast<size_t>(p.cols));
  for (int64_t t = 0; t < p.n; ++t) {
    xt.from_float(d.x.data() + t * p.cols, xq.data() + t * xrow, p.cols);
    xt.to_float(xq.data() + t * xrow, xdeq.data() + t * p.cols, p.cols);
  }
  y->assign(static_cast<size_t>(p.n * p.rows), 0.0f);
  mag->assign(y->size(), 0.0);
  for (int64_t r = 0; r < p.rows; ++r) {
    wt.to_float(d.w.data() + r * wrow, wdeq.data(), p.cols);
    for (int64_t t = 0; t < p.n; ++t) {
      float s;
      wt.vec_dot(p.cols, &s, d.w.data() + r * wrow, xq.data() + t * xrow);
      double m = 0;
      for (int64_t k = 0; k < p.cols; ++k) m += std::fabs(static_cast<double>(wdeq[k]) * xdeq[t * p.cols + k]);
      (*y)[t * p.rows + r] = s + (p.bias ? d.b[r] : 0.0f);
      (*mag)[t * p.rows + r] = m;
    }
  }
}

// Runs cpu_matmul and returns the number of elements outside the limit.
// With x8, the weight goes in as the CPU backend's x8 copy (repack.h).
int check(const Problem& p, const Data& d, const std::vector<float>& yref, const std::vector<double>& mag,
          ThreadPool& pool, const char* route, bool x8 = false) {
  TensorView view;
  view.name = "w";
  view.type = p.type;
  view.rows = p.rows;
  view.cols = p.cols;
  view.data = d.w.data();
  CpuWeight W(view, WeightUse::Matmul);
  std::vector<uint8_t> repacked;
  if (x8) {
    repacked.resize(d.w.size());
    repack_x8(pool, p.type, d.w.data(), p.rows, p.cols, repacked.data());
    W.data = repacked.data();
    W.layout = WeightLayout::X8;
  }
  // Canary-filled output: every element must be written.
  std::vector<float> y(yref.size() + 1, std::nanf(""));
  std::vector<uint8_t> scratch;
  cpu_matmul(pool, W, d.x.data(), p.n, y.data(), p.bias ? d.b.data() : nullptr, scratch);
  int bad = 0;
  for (size_t i = 0; i < yref.size(); ++i) {
    const double tol = kMatmulRelTol * mag[i] + 1e-6;
    if (!(std::fabs(static_cast<double>(y[i]) - yref[i]) <= tol)) {
      if (bad++ < 3)
        std::fprintf(stderr, "  %s %s rows %lld cols %lld n %lld%s: y[%zu] = %g, reference %g\n", route,
                     dtype_name(p.type), static_cast<long long>(p.rows), static_cast<long long>(p.cols),
                     static_cast<long long>(p.n), p.bias ? " +bias" : "", i, y[i], yref[i]);
    }
  }
  if (!std::isnan(y.back())) ++bad;  // wrote past the end
  return bad;
}

// The kernel tables to try: whatever cpu_kernels() picks, each SIMD set this
// CPU can run, and none (the vec_dot route with the fastest per-type kernels).
struct Route {
  const char* name;
  const CpuKernels* kernels;  // nullptr: no override
};

std::vector<Route> routes() {
  // Every SIMD table has the same per-type kernels.
  const CpuKernels* simd = cpu_kernels_for(CpuIsa::Avx2);
  if (!simd) simd = cpu_kernels_for(CpuIsa::Neon);
  static const CpuKernels no_blocked = without_blocked_matmul(simd ? *simd : cpu_kernels_scalar());
  std::vector<Route> r = {{"auto", nullptr}, {"vec_dot", &no_blocked}};
  if (const CpuKernels* k = cpu_kernels_for(CpuIsa::Avx2)) r.push_back({"avx2", k});
  if (const CpuKernels* k = cpu_kernels_for(CpuIsa::Avx512)) r.push_back({"avx512", k});
  return r;
}

struct Override {
  explicit Override(const Route& r) { override_cpu_kernels(r.kernels); }
  ~Override() { override_cpu_kernels(nullptr); }
};

using cxrtest::ScalarMode;

// Shapes that straddle every tile edge: rows not a multiple of 8/16/32/64,
// tokens not a multiple of 4/6/8 and on both sides of the direct/packed
// switch, float columns past one 256-wide K block and not a multiple of 16,
// integer rows of 19 blocks (a full group of 16 or 8 scales, then a pair and
// a lone block on the decode route), and of 27 and 7 blocks (groups of four
// after the sixteens, then lone blocks).
std::vector<Problem> problems(DType t) {
  const bool k_quant = t == DType::Q4_K || t == DType::Q6_K;
  const bool flt = t == DType::F32 || t == DType::F16 || t == DType::BF16;
  const int64_t c1 = k_quant ? 256 : 64, c2 = k_quant ? 768 : flt ? 600 : 608;
  std::vector<Problem> v;
  for (int64_t n : {1, 2, 3, 4, 5, 7, 8, 9, 13, 19})
    for (bool bias : {false, true}) v.push_back({t, n % 2 ? 37 : 16, n % 3 ? c2 : c1, n, bias});
  v.push_back({t, 1, c1, 3, true});
  v.push_back({t, 70, c2, 1, false});
  v.push_back({t, 129, c2, 24, true});
  if (!k_quant && !flt) {
    // Decode tails: 27 blocks = 16 + two groups of four + 3 single blocks; 7 = one group + 3.
    for (int64_t n : {1, 3}) {
      v.push_back({t, 37, 864, n, n == 1});
      v.push_back({t, 19, 224, n, false});
    }
  }
  return v;
}

// Checks p against its reference on every kernel set this CPU has (and,
// with scalar, on the forced scalar kernels too), one CHECK per route.
void check_every_route(const Problem& p, const Data& d, ThreadPool& pool, bool scalar, bool x8 = false) {
  std::vector<float> yref;
  std::vector<double> mag;
  reference(p, d, &yref, &mag);
  for (const Route& r : routes()) {
    Override o(r);
    CHECK(check(p, d, yref, mag, pool, r.name, x8) == 0);
  }
  if (scalar) {
    ScalarMode forced(true);
    CHECK(check(p, d, yref, mag, pool, "scalar", x8) == 0);
  }
}

const DType kWeightTypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q4_0,
                              DType::Q8_0, DType::Q4_K, DType::Q6_K};

}  // namespace

TEST(matmul_every_route_matches_reference) {
  ThreadPool pool(2);
  unsigned seed = 1;
  for (DType t : kWeightTypes) {
    for (const Problem& p : problems(t)) {
      check_every_route(p, make(p, seed++), pool, true);
    }
  }
}

// Q4_0 and Q8_0 repacked eight rows at a time: decode (1-3 tokens) and
// panels, row counts that leave a lone group of 8 after the 16-row panels,
// rows of 2, 19 and 27 blocks, with and without bias, on every route (the
// vec_dot route unpacks a group at a time).
TEST(matmul_x8_matches_reference) {
  ThreadPool pool(2);
  unsigned seed = 500;
  for (DType t : {DType::Q4_0, DType::Q8_0})
    for (int64_t rows : {8, 24, 64, 136})
      for (int64_t cols : {64, 608, 864})
        for (int64_t n : {1, 2, 3, 4, 9, 17}) {
          const Problem p{t, rows, cols, n, (rows + n) % 2 == 0};
          check_every_route(p, make(p, seed++), pool, n == 1 || n == 9, true);
        }
}

// The layout moves bytes only: unpacking a group gives the rows back, and the
// bytes sit where repack.h says.
TEST(repack_x8_round_trips) {
  ThreadPool pool(2);
  for (DType t : {DType::Q4_0, DType::Q8_0}) {
    const Problem p{t, 24, 608, 1, false};
    const Data d = make(p, 77);
    std::vector<uint8_t> x8(d.w.size()), back(d.w.size());
    repack_x8(pool, t, d.w.data(), p.rows, p.cols, x8.data());
    CHECK(x8 != d.w);
    const size_t group = d.w.size() / 3;
    for (int g = 0; g < 3; ++g) unpack_x8_group(t, x8.data() + g * group, p.cols, back.data() + g * group);
    CHECK(back == d.w);
    // Block 0 of group 1: row 8's scale, then row 9's; chunk 0 begins with row
    // 8's first quant dword, then row 9's; chunk 1 with row 8's second.
    const size_t row = d.w.size() / p.rows;
    const uint8_t* g1 = x8.data() + group;
    CHECK(std::memcmp(g1, d.w.data() + 8 * row, 2) == 0);
    CHECK(std::memcmp(g1 + 2, d.w.data() + 9 * row, 2) == 0);
    CHECK(std::memcmp(g1 + 16, d.w.data() + 8 * row + 2, 4) == 0);
    CHECK(std::memcmp(g1 + 20, d.w.data() + 9 * row + 2, 4) == 0);
    CHECK(std::memcmp(g1 + 48, d.w.data() + 8 * row + 6, 4) == 0);
    // Block 1 of group 1 follows block 0: 8 source blocks later.
    CHECK(std::memcmp(g1 + x8_block_bytes(t), d.w.data() + 8 * row + x8_block_bytes(t) / 8, 2) == 0);
  }
}

TEST(matmul_single_thread_matches_reference) {
  ThreadPool pool(1);
  const Problem p{DType::Q4_0, 45, 256, 11, true};
  check_every_route(p, make(p, 99), pool, false);
}

// Q8_0 quants of -128 never come out of a Q8_0 quantizer but are legal in a
// file; the unsigned-offset (VNNI) and |w| (AVX2) tricks must both handle them.
TEST(matmul_q8_0_handles_minus_128) {
  ThreadPool pool(2);
  for (int64_t n : {1, 6, 17}) {
    const Problem p{DType::Q8_0, 19, 128, n, false};
    Data d = make(p, 7 + static_cast<unsigned>(n));
    auto* blocks = reinterpret_cast<block_q8_0*>(d.w.data());
    const int64_t nblocks = p.rows * p.cols / QK8_0;
    for (int64_t b = 0; b < nblocks; b += 3) blocks[b].qs[b % 32] = -128;
    check_every_route(p, d, pool, false);
  }
}

TEST(matmul_force_scalar_disables_panel_kernels) {
  ScalarMode scalar(true);
  CHECK(cpu_kernels().panels.int_panel == nullptr && cpu_kernels().panels.float_chunk == nullptr);
}
