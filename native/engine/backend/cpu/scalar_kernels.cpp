// scalar_kernels.cpp - the scalar kernels of the rows and attention slots
// (cpu_kernels.h): plain C++, the reference every SIMD version is tested
// against and what runs where no SIMD set does (or CXR_FORCE_SCALAR=1).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backend/cpu/kernel_sets.h"
#include "backend/cpu/rows_scalar.h"
#include "types/quants.h"

namespace cxr {
namespace detail {
namespace {

// --- attention ------------------------------------------------------------------

void gemm_scalar(const float* A, int lda, const float* B, int ldb, int kd, float* C, int ldc, int rows, int cols,
                 const float* c) {
  for (int r = 0; r < rows; ++r) {
    float* cr = C + r * ldc;
    for (int x = 0; x < cols; ++x) cr[x] = c ? cr[x] * c[r] : 0.0f;
    for (int k = 0; k < kd; ++k) {
      const float a = A[r * lda + k];
      const float* b = B + k * ldb;
      for (int x = 0; x < cols; ++x) cr[x] += a * b[x];
    }
  }
}

float exp_row_scalar(float* s, int vis, int nk, float m) {
  float sum = 0;
  for (int j = 0; j < vis; ++j) sum += (s[j] = std::exp(s[j] - m));
  for (int j = vis; j < nk; ++j) s[j] = 0;
  return sum;
}

float row_max_scalar(const float* s, int n) {
  float m = s[0];
  for (int j = 1; j < n; ++j) m = std::max(m, s[j]);
  return m;
}

inline float kv_at(const uint8_t* row, bool f16, int d) {
  return f16 ? fp16_to_fp32(reinterpret_cast<const uint16_t*>(row)[d]) : reinterpret_cast<const float*>(row)[d];
}

void decode_tile_scalar(const float* q, const uint8_t* const* krows, const uint8_t* const* vrows, size_t off,
                        bool f16, int hd, int nk, float* m, float* l, float* o) {
  float s[kAttnDecodeKeys];
  float mt = -INFINITY;
  for (int j = 0; j < nk; ++j) {
    float acc = 0;
    for (int d = 0; d < hd; ++d) acc += q[d] * kv_at(krows[j] + off, f16, d);
    s[j] = acc;
    mt = std::max(mt, acc);
  }
  const float mnew = std::max(*m, mt);
  const float c = *m == -INFINITY ? 0.0f : std::exp(*m - mnew);
  float sum = 0;
  for (int j = 0; j < nk; ++j) sum += (s[j] = std::exp(s[j] - mnew));
  *l = *l * c + sum;
  *m = mnew;
  for (int d = 0; d < hd; ++d) {
    float acc = o[d] * c;
    for (int j = 0; j < nk; ++j) acc += s[j] * kv_at(vrows[j] + off, f16, d);
    o[d] = acc;
  }
}

}  // namespace

void install_scalar_kernels(CpuKernels& k) {
  k.rmsnorm = rmsnorm_row_scalar;
  k.add_rmsnorm = add_rmsnorm_row_scalar;
  k.layernorm = layernorm_row_scalar;
  k.add_layernorm = add_layernorm_row_scalar;
  k.rope_head = rope_head_scalar;
  k.silu_mul = silu_mul_scalar;
  k.gelu = gelu_scalar;
  k.add = add_scalar;

  k.attn_head_multiple = 1;
  k.attn_gemm = gemm_scalar;
  k.attn_exp_row = exp_row_scalar;
  k.attn_row_max = row_max_scalar;
  k.attn_decode_tile = decode_tile_scalar;
}

}  // namespace detail
}  // namespace cxr
