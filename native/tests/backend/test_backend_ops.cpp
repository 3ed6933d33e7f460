// test_backend_ops.cpp - the CPU backend's small ops (norms, RoPE, activations,
// residual adds, KV stores, embedding rows) against plain double-precision
// formulas written here, on the SIMD kernels and on the forced scalar path.
// Lengths are chosen off the vector widths (8, 16, 32) so tails are covered.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "types/error.h"
#include "backend/cpu/gemm.h"
#include "format/gguf.h"
#include "backend/cpu/cpu_kernels.h"
#include "types/quants.h"
#include "support/data.h"
#include "support/test.h"
#include "support/weights.h"
#include "backend/cpu/cpu_weight.h"

#if !defined(_WIN32)
#include <sys/mman.h>
#include <unistd.h>
#endif

using namespace cxr;

namespace {

using cxrtest::matrix_weight;
using cxrtest::randn;
using cxrtest::vector_weight;

// Runs `body` once on the fastest kernels and once on the scalar ones.
template <typename F>
void both_paths(F body) {
  for (bool scalar : {false, true}) {
    force_scalar_kernels(scalar);
    auto be = make_cpu_backend(2);
    body(*be, scalar);
  }
  force_scalar_kernels(false);
}

// Float results of O(1) values computed with float accumulation over a few
// thousand terms: a few float ulps. Wrong math (a missing eps, a swapped sign,
// a skipped tail) is off by far more.
constexpr double kNormTol = 2e-6;

}  // namespace

TEST(rmsnorm_matches_double_reference) {
  for (int64_t dim : {4096, 1000, 7}) {
    const int64_t n = 5;
    const auto x = randn(n * dim, 1, 2.0f), w = randn(dim, 2);
    both_paths([&](Backend& be, bool) {
      std::vector<float> out(n * dim);
      be.rmsnorm(x.data(), *vector_weight(be, w), n, dim, 1e-5f, out.data());
      for (int64_t t = 0; t < n; ++t) {
        double ss = 0;
        for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(x[t * dim + i]) * x[t * dim + i];
        const double r = 1.0 / std::sqrt(ss / dim + 1e-5);
        for (int64_t i = 0; i < dim; ++i) {
          const double ref = x[t * dim + i] * r * w[i];
          CHECK_NEAR(out[t * dim + i], ref, kNormTol * (1 + std::fabs(ref)));
        }
      }
    });
  }
}

TEST(add_rmsnorm_updates_the_residual_and_normalises_it) {
  const int64_t n = 3, dim = 4100;
  const auto x0 = randn(n * dim, 3), y = randn(n * dim, 4), w = randn(dim, 5);
  both_paths([&](Backend& be, bool) {
    std::vector<float> x = x0, out(n * dim);
    be.add_rmsnorm(x.data(), y.data(), *vector_weight(be, w), n, dim, 1e-6f, out.data());
    for (int64_t t = 0; t < n; ++t) {
      double ss = 0;
      for (int64_t i = 0; i < dim; ++i) {
        const double s = static_cast<double>(x0[t * dim + i]) + y[t * dim + i];
        CHECK_NEAR(x[t * dim + i], s, 1e-6 * (1 + std::fabs(s)));
        ss += s * s;
      }
      const double r = 1.0 / std::sqrt(ss / dim + 1e-6);
      for (int64_t i = 0; i < dim; ++i) {
        const double ref = (static_cast<double>(x0[t * dim + i]) + y[t * dim + i]) * r * w[i];
        CHECK_NEAR(out[t * dim + i], ref, kNormTol * (1 + std::fabs(ref)));
      }
    }
  });
}

TEST(fused_residual_ops_may_write_over_their_addend) {
  // The model writes the norm into the buffer that held the branch output: out == y.
  const int64_t n = 3, dim = 4096 + 24;
  const auto x0 = randn(n * dim, 20), y0 = randn(n * dim, 21), w = randn(dim, 22), b = randn(dim, 23);
  both_paths([&](Backend& be, bool) {
    std::vector<float> x1 = x0, y1 = y0, x2 = x0, sep(n * dim);
    be.add_rmsnorm(x1.data(), y1.data(), *vector_weight(be, w), n, dim, 1e-5f, y1.data());
    be.add(x2.data(), y0.data(), n * dim);
    be.rmsnorm(x2.data(), *vector_weight(be, w), n, dim, 1e-5f, sep.data());
    bool same = x1 == x2;
    for (int64_t i = 0; i < n * dim; ++i) same = same && std::fabs(y1[i] - sep[i]) <= 1e-6f * (1 + std::fabs(sep[i]));
    CHECK(same);
    std::vector<float> x3 = x0, y3 = y0, x4 = x0, sep2(n * dim);
    be.add_layernorm(x3.data(), y3.data(), *vector_weight(be, w), *vector_weight(be, b), n, dim, 1e-5f, y3.data());
    be.add(x4.data(), y0.data(), n * dim);
    be.layernorm(x4.data(), *vector_weight(be, w), *vector_weight(be, b), n, dim, 1e-5f, sep2.data());
    same = x3 == x4;
    for (int64_t i = 0; i < n * dim; ++i) same = same && std::fabs(y3[i] - sep2[i]) <= 1e-6f * (1 + std::fabs(sep2[i]));
    CHECK(same);
  });
}

TEST(layernorm_matches_double_reference_with_a_large_mean) {
  // A mean far from zero: a one-pass E[x²] - E[x]² variance would lose most digits.
  for (int64_t dim : {1024, 77}) {
    const int64_t n = 4;
    const auto x = randn(n * dim, 6, 0.5f, 300.0f), w = randn(dim, 7), b = randn(dim, 8);
    both_paths([&](Backend& be, bool fused) {
      std::vector<float> out(n * dim), xs = x, zeros(n * dim, 0.0f);
      if (fused) be.add_layernorm(xs.data(), zeros.data(), *vector_weight(be, w), *vector_weight(be, b), n, dim, 1e-5f, out.data());
      else be.layernorm(x.data(), *vector_weight(be, w), *vector_weight(be, b), n, dim, 1e-5f, out.data());
      for (int64_t t = 0; t < n; ++t) {
        double mean = 0, var = 0;
        for (int64_t i = 0; i < dim; ++i) mean += x[t * dim + i];
        mean /= dim;
        for (int64_t i = 0; i < dim; ++i) var += (x[t * dim + i] - mean) * (x[t * dim + i] - mean);
        const double r = 1.0 / std::sqrt(var / dim + 1e-5);
        for (int64_t i = 0; i < dim; ++i) {
          const double ref = (x[t * dim + i] - mean) * r * w[i] + b[i];
          // Inputs near 300 carry float rounding of 300·2^-24 each, relative to a spread of 0.5.
          CHECK_NEAR(out[t * dim + i], ref, 1e-4 * (1 + std::fabs(ref)));
        }
      }
    });
  }
}

TEST(add_layernorm_adds_then_normalises) {
  const int64_t n = 2, dim = 1030;
  const auto x0 = randn(n * dim, 9), y = randn(n * dim, 10), w = randn(dim, 11), b = randn(dim, 12);
  both_paths([&](Backend& be, bool) {
    std::vector<float> x = x0, out(n * dim);
    be.add_layernorm(x.data(), y.data(), *vector_weight(be, w), *vector_weight(be, b), n, dim, 1e-5f, out.data());
    for (int64_t t = 0; t < n; ++t) {
      double mean = 0, var = 0;
      for (int64_t i = 0; i < dim; ++i) mean += static_cast<double>(x0[t * dim + i]) + y[t * dim + i];
      mean /= dim;
      for (int64_t i = 0; i < dim; ++i) {
        const double s = static_cast<double>(x0[t * dim + i]) + y[t * dim + i];
        CHECK_NEAR(x[t * dim + i], s, 1e-6 * (1 + std::fabs(s)));
        var += (s - mean) * (s - mean);
      }
      const double r = 1.0 / std::sqrt(var / dim + 1e-5);
      for (int64_t i = 0; i < dim; ++i) {
        const double ref = ((static_cast<double>(x0[t * dim + i]) + y[t * dim + i]) - mean) * r * w[i] + b[i];
        CHECK_NEAR(out[t * dim + i], ref, kNormTol * (1 + std::fabs(ref)));
      }
    }
  });
}

TEST(rope_rotates_adjacent_pairs) {
  // head_dim 128 (LLaMA), 12 (a tail after one vector); positions past 0 and far out.
  for (int head_dim : {128, 12}) {
    const int heads = 3;
    const int64_t n = 6;
    for (int64_t pos0 : {0, 1000}) {
      const auto x0 = randn(n * heads * head_dim, 13);
      both_paths([&](Backend& be, bool) {
        std::vector<float> x = x0;
        be.rope(x.data(), n, heads, head_dim, pos0, 10000.0f);
        be.rope(x.data(), n, heads, head_dim, pos0, 10000.0f);  // again: the cached table must still be right
        for (int64_t t = 0; t < n; ++t)
          for (int h = 0; h < heads; ++h)
            for (int i = 0; i < head_dim / 2; ++i) {
              // Two rotations by the angle = one rotation by twice the angle.
              const double ang = 2.0 * (pos0 + t) * std::pow(10000.0, -2.0 * i / head_dim);
              const size_t at = (t * heads + h) * head_dim + 2 * i;
              const double a = x0[at], c = x0[at + 1];
              const double ra = a * std::cos(ang) - c * std::sin(ang), rc = a * std::sin(ang) + c * std::cos(ang);
              // The angle itself is rounded to float (as in the reference model): pos · 6e-8 of error.
              const double tol = 1e-5 + 2.5e-7 * (pos0 + t) * (std::fabs(a) + std::fabs(c));
              CHECK_NEAR(x[at], ra, tol);
              CHECK_NEAR(x[at + 1], rc, tol);
            }
      });
    }
  }
  // A different position after the cached one must not reuse it.
  auto be = make_cpu_backend(1);
  std::vector<float> a = {1, 0}, b = {1, 0};
  be->rope(a.data(), 1, 1, 2, 5, 10000.0f);
  be->rope(b.data(), 1, 1, 2, 6, 10000.0f);
  CHECK_NEAR(a[0], std::cos(5.0), 1e-6);
  CHECK_NEAR(b[0], std::cos(6.0), 1e-6);
}

TEST(silu_mul_matches_double_reference) {
  const int64_t n = 11008 + 5;
  auto g0 = randn(n, 14, 4.0f);
  g0[0] = -100.0f;  // e^100 saturates: the result must still be ~0, not NaN
  g0[1] = 90.0f;
  g0[2] = 0.0f;
  const auto u = randn(n, 15);
  both_paths([&](Backend& be, bool) {
    std::vector<float> g = g0;
    be.silu_mul(g.data(), u.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double x = g0[i];
      const double ref = x / (1.0 + std::exp(-x)) * u[i];
      CHECK_NEAR(g[i], ref, 5e-7 * std::fabs(ref) + 1e-30);
    }
  });
}

TEST(gelu_is_the_exact_erf_form) {
  // Dense over [-8, 8] (every erf piece, both signs) plus random values.
  std::vector<float> x0;
  for (int i = -80000; i <= 80000; ++i) x0.push_back(i * 1e-4f);
  const auto r = randn(1001, 16, 3.0f);
  x0.insert(x0.end(), r.begin(), r.end());
  both_paths([&](Backend& be, bool) {
    std::vector<float> x = x0;
    be.gelu(x.data(), static_cast<int64_t>(x.size()));
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double v = x0[i];
      const double ref = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
      // erf to ~1e-7 absolute (float's resolution near 1), scaled by |x|/2, plus the rounding of the product.
      const double err = std::fabs(x[i] - ref) / (1e-7 * std::fabs(v) + 2.4e-7 * std::fabs(ref) + 1e-30);
      worst = std::max(worst, err);
    }
    CHECK(worst <= 1.0);
  });
}

TEST(add_and_f16_store_match) {
  const int64_t n = 3, width = 4096 + 7;
  const auto x0 = randn(n * width, 17), y = randn(n * width, 18, 100.0f);
  both_paths([&](Backend& be, bool) {
    std::vector<float> x = x0;
    be.add(x.data(), y.data(), n * width);
    bool exact = true;
    for (int64_t i = 0; i < n * width; ++i) exact = exact && x[i] == x0[i] + y[i];
    CHECK(exact);
    // F16 rows land at row0, rounded to nearest even exactly as fp32_to_fp16 does; other rows untouched.
    std::vector<uint16_t> cache((n + 2) * width, 0xFFFF);
    be.store_rows(cache.data(), DType::F16, 1, y.data(), n, width);
    bool same = true;
    for (int64_t i = 0; i < n * width; ++i) same = same && cache[width + i] == fp32_to_fp16(y[i]);
    CHECK(same);
    CHECK(cache[0] == 0xFFFF && cache[width - 1] == 0xFFFF && cache[(n + 1) * width] == 0xFFFF);
    std::vector<float> cf((n + 1) * width, -1.0f);
    be.store_rows(cf.data(), DType::F32, 1, y.data(), n, width);
    CHECK(std::memcmp(cf.data() + width, y.data(), n * width * sizeof(float)) == 0 && cf[0] == -1.0f);
  });
}

TEST(get_rows_dequantizes_and_rejects_bad_ids) {
  const int64_t rows = 10, cols = 64;
  const auto e = randn(rows * cols, 19);
  std::vector<uint8_t> q8(dtype_row_bytes(DType::Q8_0, cols) * rows);
  quantize_weights(DType::Q8_0, e.data(), q8.data(), rows, cols);
  both_paths([&](Backend& be, bool) {
    const auto wp = matrix_weight(be, DType::Q8_0, rows, cols, q8.data(), WeightUse::Rows);
    const Weight& w = *wp;
    const int32_t ids[3] = {7, 0, 7};
    std::vector<float> out(3 * cols);
    be.get_rows(w, ids, 3, out.data());
    for (int k = 0; k < 3; ++k)
      for (int64_t i = 0; i < cols; ++i) CHECK_NEAR(out[k * cols + i], e[ids[k] * cols + i], 0.03);
    const int32_t bad[1] = {10};
    CHECK_THROWS(be.get_rows(w, bad, 1, out.data()), "token id 10 is outside the vocabulary");
  });
}

#if !defined(_WIN32)
// upload for Matmul: Q4_0 / Q8_0 matrices of whole row groups come back repacked
// (repack.h) when the SIMD kernels are there, others and CXR_REPACK=0 as the
// mapped rows; either way the matmul gives the rows' results, and the mapped
// bytes read back as the file's after their pages were released.
TEST(cpu_backend_matmul_weight_repacks_only_what_it_can) {
  const int64_t cols = 96;
  const int64_t row_counts[] = {24, 13};  // whole groups of 8, and not
  for (DType t : {DType::Q4_0, DType::Q8_0, DType::F16}) {
    for (int64_t rows : row_counts) {
      std::vector<float> wf = randn(static_cast<size_t>(rows * cols), 31 + static_cast<uint32_t>(rows));
      std::vector<uint8_t> bytes(dtype_row_bytes(t, cols) * rows);
      quantize_weights(t, wf.data(), bytes.data(), rows, cols);
      // The weight lives in a file mapping, as a GGUF tensor does.
      char path[] = "/tmp/cxr-test-weight-XXXXXX";
      const int fd = mkstemp(path);
      CHECK(fd >= 0);
      if (fd < 0) return;
      CHECK(write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
      void* map = mmap(nullptr, bytes.size(), PROT_READ, MAP_PRIVATE, fd, 0);
      close(fd);
      unlink(path);
      CHECK(map != MAP_FAILED);
      if (map == MAP_FAILED) return;
      GgufTensor tensor;
      tensor.n_dims = 2;
      tensor.ne[0] = cols;
      tensor.ne[1] = rows;
      tensor.type = t;
      tensor.nbytes = bytes.size();
      tensor.data = map;

      auto be = make_cpu_backend(2);
      const bool kernels = cpu_kernels().gemv.x8_gemv != nullptr;
      const bool want = kernels && t != DType::F16 && rows % 8 == 0;
      for (bool env_off : {false, true}) {
        if (env_off) setenv("CXR_REPACK", "0", 1);
        const auto wp = be->upload(tensor_view(tensor), WeightUse::Matmul);
        if (env_off) unsetenv("CXR_REPACK");
        const CpuWeight& w = cpu_weight(*wp);
        CHECK((w.layout == WeightLayout::X8) == (want && !env_off));
        CHECK((w.data == map) == (w.layout == WeightLayout::Rows));
        // Results equal the plain rows' on the same activations (3 tokens: decode route; 9: panels).
        for (int64_t n : {3, 9}) {
          const std::vector<float> x = randn(static_cast<size_t>(n * cols), 7);
          std::vector<float> y(static_cast<size_t>(n * rows)), yref(y.size());
          be->matmul(w, x.data(), n, y.data(), nullptr);
          be->matmul(*be->upload(tensor_view(tensor), WeightUse::Rows), x.data(), n, yref.data(), nullptr);
          double worst = 0;
          for (size_t i = 0; i < y.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(y[i]) - yref[i]));
          CHECK(worst <= 1e-4);
        }
      }
      CHECK(std::memcmp(map, bytes.data(), bytes.size()) == 0);
      munmap(map, bytes.size());
    }
  }
}
#endif
