// rows_avx2.cpp - AVX2/FMA versions of the row kernels (cpu_kernels.h's rows
// slots): norms, RoPE, activations, residual adds. Each function carries its
// own target attribute (simd_avx2.h); cpu_kernels.cpp installs them only on
// CPUs with AVX2, FMA and F16C. Row tails go through the scalar kernels
// (rows_scalar.h).
#include <cmath>
#include <cstdint>

#include "backend/cpu/kernel_sets.h"
#include "backend/cpu/rows_scalar.h"
#include "backend/cpu/x86/simd_avx2.h"

#if CXR_HAVE_AVX2_KERNELS

namespace cxr {
namespace detail {
namespace {

CXR_AVX2 float sum_squares_avx2(const float* x, int64_t dim) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 32 <= dim; i += 32) {
    const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
    const __m256 x2 = _mm256_loadu_ps(x + i + 16), x3 = _mm256_loadu_ps(x + i + 24);
    a0 = _mm256_fmadd_ps(x0, x0, a0);
    a1 = _mm256_fmadd_ps(x1, x1, a1);
    a2 = _mm256_fmadd_ps(x2, x2, a2);
    a3 = _mm256_fmadd_ps(x3, x3, a3);
  }
  for (; i + 8 <= dim; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(x + i), a0);
  float ss = avx2::hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  for (; i < dim; ++i) ss += x[i] * x[i];
  return ss;
}

// o = x · r · w
CXR_AVX2 void scale_mul_avx2(const float* x, float r, const float* w, int64_t dim, float* o) {
  const __m256 rv = _mm256_set1_ps(r);
  int64_t i = 0;
  for (; i + 8 <= dim; i += 8)
    _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), rv), _mm256_loadu_ps(w + i)));
  for (; i < dim; ++i) o[i] = x[i] * r * w[i];
}

CXR_AVX2 void rmsnorm_row_avx2(const float* x, const float* w, int64_t dim, float eps, float* o) {
  scale_mul_avx2(x, 1.0f / std::sqrt(sum_squares_avx2(x, dim) / static_cast<float>(dim) + eps), w, dim, o);
}

CXR_AVX2 void add_avx2(float* x, const float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) x[i] += y[i];
}

CXR_AVX2 void add_rmsnorm_row_avx2(float* x, const float* y, const float* w, int64_t dim, float eps, float* o) {
  add_avx2(x, y, dim);  // the row stays in L1 for the norm that follows
  rmsnorm_row_avx2(x, w, dim, eps, o);
}

CXR_AVX2 void layernorm_row_avx2(const float* x, const float* w, const float* b, int64_t dim, float eps, float* o) {
  // Two passes, mean first, so a large mean does not cancel the variance away.
  __m256 s0 = _mm256_setzero_ps(), s1 = s0;
  int64_t i = 0;
  for (; i + 16 <= dim; i += 16) {
    s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
    s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + i + 8));
  }
  float sum = avx2::hsum(_mm256_add_ps(s0, s1));
  for (; i < dim; ++i) sum += x[i];
  const float mean = sum / static_cast<float>(dim);
  const __m256 mv = _mm256_set1_ps(mean);
  __m256 v0 = _mm256_setzero_ps(), v1 = v0;
  for (i = 0; i + 16 <= dim; i += 16) {
    const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), mv), d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), mv);
    v0 = _mm256_fmadd_ps(d0, d0, v0);
    v1 = _mm256_fmadd_ps(d1, d1, v1);
  }
  float var = avx2::hsum(_mm256_add_ps(v0, v1));
  for (; i < dim; ++i) var += (x[i] - mean) * (x[i] - mean);
  const float r = 1.0f / std::sqrt(var / static_cast<float>(dim) + eps);
  const __m256 rv = _mm256_set1_ps(r);
  for (i = 0; i + 8 <= dim; i += 8) {
    const __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv), rv);
    _mm256_storeu_ps(o + i, _mm256_fmadd_ps(d, _mm256_loadu_ps(w + i), _mm256_loadu_ps(b + i)));
  }
  for (; i < dim; ++i) o[i] = (x[i] - mean) * r * w[i] + b[i];
}

CXR_AVX2 void add_layernorm_row_avx2(float* x, const float* y, const float* w, const float* b, int64_t dim,
                                     float eps, float* o) {
  add_avx2(x, y, dim);
  layernorm_row_avx2(x, w, b, dim, eps, o);
}

CXR_AVX2 void rope_head_avx2(float* v, const float* cs, const float* sn, int head_dim) {
  int i = 0;
  for (; i + 8 <= head_dim; i += 8) {
    const __m256 x = _mm256_loadu_ps(v + i);
    const __m256 swapped = _mm256_permute_ps(x, 0xB1);  // (c, a) in each pair
    // even lanes: a cos - c sin; odd lanes: c cos + a sin
    _mm256_storeu_ps(v + i, _mm256_fmaddsub_ps(x, _mm256_loadu_ps(cs + i),
                                               _mm256_mul_ps(swapped, _mm256_loadu_ps(sn + i))));
  }
  rope_head_scalar(v + i, cs + i, sn + i, head_dim - i);
}

CXR_AVX2 void silu_mul_avx2(float* g, const float* u, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(g + i);
    const __m256 e = avx2::exp(_mm256_xor_ps(x, neg));
    _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
  }
  silu_mul_scalar(g + i, u + i, n - i);
}

CXR_AVX2 void gelu_avx2(float* x, int64_t n) {
  const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), rsqrt2 = _mm256_set1_ps(0.70710678118654752f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 e = avx2::erf(_mm256_mul_ps(v, rsqrt2));
    _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, e)));
  }
  gelu_scalar(x + i, n - i);
}

}  // namespace

void install_avx2_rows(CpuKernels& k) {
  k.rmsnorm = rmsnorm_row_avx2;
  k.add_rmsnorm = add_rmsnorm_row_avx2;
  k.layernorm = layernorm_row_avx2;
  k.add_layernorm = add_layernorm_row_avx2;
  k.rope_head = rope_head_avx2;
  k.silu_mul = silu_mul_avx2;
  k.gelu = gelu_avx2;
  k.add = add_avx2;
}

}  // namespace detail
}  // namespace cxr

#endif  // CXR_HAVE_AVX2_KERNELS
