// rows_scalar.h - the scalar row kernels (cpu_kernels.h's rows slots): the
// reference the SIMD versions are tested against, and the tails those
// versions finish a row with.
//
// Inline in a header so that a SIMD file's tail call is compiled (and
// inlined) there, as it was when both lived in one file; scalar_kernels.cpp
// puts them in the scalar table.
#pragma once
#include <cmath>
#include <cstdint>

namespace cxr {
namespace detail {
// Internal to each file that includes this, as when they were file-local.
namespace {

// Σ x[i]² in double: the reference the SIMD sum (8 float lanes x 4 chains) is tested against.
inline float rms_scale_scalar(const float* x, int64_t dim, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(x[i]) * x[i];
  return 1.0f / std::sqrt(static_cast<float>(ss / dim) + eps);
}

inline void rmsnorm_row_scalar(const float* x, const float* w, int64_t dim, float eps, float* o) {
  const float r = rms_scale_scalar(x, dim, eps);
  for (int64_t i = 0; i < dim; ++i) o[i] = x[i] * r * w[i];
}

inline void add_rmsnorm_row_scalar(float* x, const float* y, const float* w, int64_t dim, float eps, float* o) {
  for (int64_t i = 0; i < dim; ++i) x[i] += y[i];
  rmsnorm_row_scalar(x, w, dim, eps, o);
}

inline void layernorm_row_scalar(const float* x, const float* w, const float* b, int64_t dim, float eps, float* o) {
  double sum = 0;
  for (int64_t i = 0; i < dim; ++i) sum += x[i];
  const double mean = sum / dim;
  double var = 0;
  for (int64_t i = 0; i < dim; ++i) var += (x[i] - mean) * (x[i] - mean);
  const float r = static_cast<float>(1.0 / std::sqrt(var / dim + eps));
  const float m = static_cast<float>(mean);
  for (int64_t i = 0; i < dim; ++i) o[i] = (x[i] - m) * r * w[i] + b[i];
}

inline void add_layernorm_row_scalar(float* x, const float* y, const float* w, const float* b, int64_t dim, float eps,
                              float* o) {
  for (int64_t i = 0; i < dim; ++i) x[i] += y[i];
  layernorm_row_scalar(x, w, b, dim, eps, o);
}

// Rotates the adjacent pairs of one head: (a, c) -> (a cos - c sin, a sin + c cos).
// cs and sn hold each pair's cosine and sine twice (index 2i and 2i + 1).
inline void rope_head_scalar(float* v, const float* cs, const float* sn, int head_dim) {
  for (int i = 0; i < head_dim; i += 2) {
    const float a = v[i], c = v[i + 1];
    v[i] = a * cs[i] - c * sn[i];
    v[i + 1] = a * sn[i] + c * cs[i];
  }
}

inline void silu_mul_scalar(float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

inline void gelu_scalar(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
}

inline void add_scalar(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace
}  // namespace detail
}  // namespace cxr
