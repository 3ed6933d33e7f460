// attention_avx2.cpp - AVX2/FMA versions of attention's inner loops
// (cpu_kernels.h's attn_ slots; attention.cpp drives them). Each function
// carries its own target attribute (simd_avx2.h); cpu_kernels.cpp installs
// them only on CPUs with AVX2, FMA and F16C.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backend/cpu/kernel_sets.h"
#include "backend/cpu/x86/simd_avx2.h"

#if CXR_HAVE_AVX2_KERNELS

namespace cxr {
namespace detail {
namespace {

// An R x 8W block of C in R·W registers: per step k, W loads of B and R
// broadcasts of A feed R·W FMAs. R = 6, W = 2 uses 12 accumulators + 3 operands
// of the 16 ymm registers.
template <int R, int W>
CXR_AVX2 void gemm_tile(const float* A, int lda, const float* B, int ldb, int kd, float* C, int ldc,
                        const float* c) {
  // The loops over r and w must unroll fully so that acc lives in registers.
  __m256 acc[R][W];
  CXR_UNROLL for (int r = 0; r < R; ++r)
    CXR_UNROLL for (int w = 0; w < W; ++w)
      acc[r][w] = c ? _mm256_mul_ps(_mm256_loadu_ps(C + r * ldc + 8 * w), _mm256_set1_ps(c[r]))
                    : _mm256_setzero_ps();
  for (int k = 0; k < kd; ++k) {
    __m256 b[W];
    CXR_UNROLL for (int w = 0; w < W; ++w) b[w] = _mm256_loadu_ps(B + k * ldb + 8 * w);
    CXR_UNROLL for (int r = 0; r < R; ++r) {
      const __m256 a = _mm256_broadcast_ss(A + r * lda + k);
      CXR_UNROLL for (int w = 0; w < W; ++w) acc[r][w] = _mm256_fmadd_ps(a, b[w], acc[r][w]);
    }
  }
  CXR_UNROLL for (int r = 0; r < R; ++r)
    CXR_UNROLL for (int w = 0; w < W; ++w) _mm256_storeu_ps(C + r * ldc + 8 * w, acc[r][w]);
}

template <int R>
CXR_AVX2 void gemm_rows(const float* A, int lda, const float* B, int ldb, int kd, float* C, int ldc, int cols,
                        const float* c) {
  int x = 0;
  for (; x + 16 <= cols; x += 16) gemm_tile<R, 2>(A, lda, B + x, ldb, kd, C + x, ldc, c);
  if (x < cols) gemm_tile<R, 1>(A, lda, B + x, ldb, kd, C + x, ldc, c);
}

CXR_AVX2 void gemm_avx2(const float* A, int lda, const float* B, int ldb, int kd, float* C, int ldc, int rows,
                        int cols, const float* c) {
  int r = 0;
  for (; r + 6 <= rows; r += 6)
    gemm_rows<6>(A + r * lda, lda, B, ldb, kd, C + r * ldc, ldc, cols, c ? c + r : nullptr);
  const float* cr = c ? c + r : nullptr;
  A += r * lda;
  C += r * ldc;
  switch (rows - r) {
    case 5: gemm_rows<5>(A, lda, B, ldb, kd, C, ldc, cols, cr); break;
    case 4: gemm_rows<4>(A, lda, B, ldb, kd, C, ldc, cols, cr); break;
    case 3: gemm_rows<3>(A, lda, B, ldb, kd, C, ldc, cols, cr); break;
    case 2: gemm_rows<2>(A, lda, B, ldb, kd, C, ldc, cols, cr); break;
    case 1: gemm_rows<1>(A, lda, B, ldb, kd, C, ldc, cols, cr); break;
    default: break;
  }
}

// s has room for whole vectors up to its tile width (attention.cpp's kKeys,
// a multiple of 16), so lanes past `vis` are computed, then zeroed before
// they are summed or stored.
CXR_AVX2 float exp_row_avx2(float* s, int vis, int nk, float m) {
  const __m256 mv = _mm256_set1_ps(m);
  __m256 sum = _mm256_setzero_ps();
  int j = 0;
  for (; j < vis; j += 8) {
    __m256 e = avx2::exp(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
    if (j + 8 > vis) e = _mm256_and_ps(e, avx2::first_lanes(vis - j));
    _mm256_storeu_ps(s + j, e);
    sum = _mm256_add_ps(sum, e);
  }
  for (; j < nk; j += 8) _mm256_storeu_ps(s + j, _mm256_setzero_ps());
  return avx2::hsum(sum);
}

CXR_AVX2 float row_max_avx2(const float* s, int n) {
  __m256 m = _mm256_set1_ps(-INFINITY);
  int j = 0;
  for (; j + 8 <= n; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(s + j));
  float r = avx2::hmax(m);
  for (; j < n; ++j) r = std::max(r, s[j]);
  return r;
}


CXR_AVX2 inline __m256 load_kv(const uint8_t* row, bool f16, int d) {
  return f16 ? _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * d)))
             : _mm256_loadu_ps(reinterpret_cast<const float*>(row) + d);
}

// Eight keys at a time: the eight dot products run side by side (one q load
// feeds eight FMAs) and are reduced together into one vector, lane j = key j;
// the output is then read and written once per tile, not once per key.
CXR_AVX2 void decode_tile_avx2(const float* q, const uint8_t* const* krows, const uint8_t* const* vrows, size_t off,
                               bool f16, int hd, int nk, float* m, float* l, float* o) {
  static_assert(kAttnDecodeKeys == 8, "one lane per key");
  const uint8_t* k[8];
  CXR_UNROLL for (int j = 0; j < 8; ++j) k[j] = krows[j] + off;
  __m256 acc[8];
  CXR_UNROLL for (int j = 0; j < 8; ++j) acc[j] = _mm256_setzero_ps();
  for (int d = 0; d < hd; d += 8) {
    const __m256 qv = _mm256_loadu_ps(q + d);
    CXR_UNROLL for (int j = 0; j < 8; ++j) acc[j] = _mm256_fmadd_ps(qv, load_kv(k[j], f16, d), acc[j]);
  }
  // hadd twice leaves, per 128-bit half, the sums of four keys over that half
  // of their lanes; adding the halves crosswise finishes all eight.
  const __m256 s0123 = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
  const __m256 s4567 = _mm256_hadd_ps(_mm256_hadd_ps(acc[4], acc[5]), _mm256_hadd_ps(acc[6], acc[7]));
  const __m256 live = avx2::first_lanes(nk);
  __m256 s = _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20), _mm256_permute2f128_ps(s0123, s4567, 0x31));
  s = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), s, live);

  const float mnew = std::max(*m, avx2::hmax(s));
  const float c = *m == -INFINITY ? 0.0f : std::exp(*m - mnew);
  const __m256 p = _mm256_and_ps(avx2::exp(_mm256_sub_ps(s, _mm256_set1_ps(mnew))), live);
  *l = *l * c + avx2::hsum(p);
  *m = mnew;
  alignas(32) float pj[8];
  _mm256_store_ps(pj, p);

  const uint8_t* v[8];
  CXR_UNROLL for (int j = 0; j < 8; ++j) v[j] = vrows[j] + off;
  const __m256 cv = _mm256_set1_ps(c);
  int d = 0;
  for (; d + 32 <= hd; d += 32) {  // four accumulators of o at a time
    __m256 o0 = _mm256_mul_ps(_mm256_loadu_ps(o + d), cv), o1 = _mm256_mul_ps(_mm256_loadu_ps(o + d + 8), cv);
    __m256 o2 = _mm256_mul_ps(_mm256_loadu_ps(o + d + 16), cv), o3 = _mm256_mul_ps(_mm256_loadu_ps(o + d + 24), cv);
    for (int j = 0; j < nk; ++j) {
      const __m256 pb = _mm256_broadcast_ss(pj + j);
      o0 = _mm256_fmadd_ps(pb, load_kv(v[j], f16, d), o0);
      o1 = _mm256_fmadd_ps(pb, load_kv(v[j], f16, d + 8), o1);
      o2 = _mm256_fmadd_ps(pb, load_kv(v[j], f16, d + 16), o2);
      o3 = _mm256_fmadd_ps(pb, load_kv(v[j], f16, d + 24), o3);
    }
    _mm256_storeu_ps(o + d, o0);
    _mm256_storeu_ps(o + d + 8, o1);
    _mm256_storeu_ps(o + d + 16, o2);
    _mm256_storeu_ps(o + d + 24, o3);
  }
  for (; d < hd; d += 8) {
    __m256 o0 = _mm256_mul_ps(_mm256_loadu_ps(o + d), cv);
    for (int j = 0; j < nk; ++j) o0 = _mm256_fmadd_ps(_mm256_broadcast_ss(pj + j), load_kv(v[j], f16, d), o0);
    _mm256_storeu_ps(o + d, o0);
  }
}

}  // namespace

void install_avx2_attention(CpuKernels& k) {
  k.attn_head_multiple = 8;
  k.attn_gemm = gemm_avx2;
  k.attn_exp_row = exp_row_avx2;
  k.attn_row_max = row_max_avx2;
  k.attn_decode_tile = decode_tile_avx2;
}

}  // namespace detail
}  // namespace cxr

#endif  // CXR_HAVE_AVX2_KERNELS
