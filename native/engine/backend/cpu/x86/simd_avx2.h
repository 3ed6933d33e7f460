// simd_avx2.h - small AVX2/FMA helpers shared by the CPU kernels that are not
// matmuls (attention_avx2.cpp, rows_avx2.cpp): sums, exp and erf on 8 floats.
//
// Every function carries its own target attribute instead of the file being
// built with -mavx2, so the binary still runs on CPUs without AVX2: callers
// reach these only through the kernel table (cpu_kernels.h), which holds them
// only on CPUs with AVX2, FMA and F16C. The attributes only widen what the
// compiler may emit inside these functions; library code they call keeps its
// baseline body.
#pragma once

#include <cstdint>

#include "types/quants.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define CXR_HAVE_AVX2_KERNELS 1
#include <immintrin.h>
#define CXR_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define CXR_HAVE_AVX2_KERNELS 0
#endif

// Full unrolling of short fixed-count loops in register-tiled kernels (at -O2
// GCC leaves them rolled and keeps the accumulators in memory).
#if defined(__clang__)
#define CXR_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define CXR_UNROLL _Pragma("GCC unroll 16")
#else
#define CXR_UNROLL
#endif

namespace cxr {

#if CXR_HAVE_AVX2_KERNELS
namespace avx2 {

CXR_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

CXR_AVX2 inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Lanes i < n all ones, the rest zero (0 <= n <= 8).
CXR_AVX2 inline __m256 first_lanes(int n) {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), iota));
}

// e^x, within about 2 ulp of the float result. x = n·ln2 + r with |r| <= ln2/2
// (ln2 split in two so r stays exact), e^r by its Taylor series to r^7 (error
// below 6e-9 relative), and 2^n built in the exponent field. Inputs are clamped
// to where both e^x and 2^n are normal floats, so the result is never inf or a
// denormal: below -87.3 it returns ~1e-38 instead of less, which no sum notices.
CXR_AVX2 inline __m256 exp(__m256 x) {
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f)), _mm256_set1_ps(-87.3365447505531f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// erf(x), within 1e-7 absolute (float evaluation error; the fit itself is good
// to 1e-9). [0, 4) is cut into 8 pieces of width 1/2, each with a degree-7
// polynomial in the distance from the piece's centre, fitted by least squares
// to double-precision erf at Chebyshev nodes. Coefficient j of all 8 pieces
// sits in one vector, so a lane picks its piece with one permute. Beyond 4,
// erf is 1 to within float rounding; the sign is put back at the end.
CXR_AVX2 inline __m256 erf(__m256 x) {
  alignas(32) static const float kCoef[8][8] = {
      {2.763263881e-01f, 7.111556530e-01f, 9.229001403e-01f, 9.866716862e-01f, 9.985373020e-01f,
       9.998993874e-01f, 9.999957085e-01f, 9.999998808e-01f},
      {1.060014129e+00f, 6.429310441e-01f, 2.365211248e-01f, 5.277499557e-02f, 7.142319344e-03f,
       5.862772814e-04f, 2.918901191e-05f, 8.814288321e-07f},
      {-2.650029659e-01f, -4.821981490e-01f, -2.956517339e-01f, -9.235620499e-02f, -1.607015729e-02f,
       -1.612267457e-03f, -9.486933413e-05f, -3.306070994e-06f},
      {-3.091704845e-01f, 2.678835019e-02f, 1.675358862e-01f, 9.015738964e-02f, 2.172451280e-02f,
       2.760380274e-03f, 1.958126231e-04f, 7.970327715e-06f},
      {1.269345582e-01f, 1.506756246e-01f, -6.132035051e-03f, -4.810552299e-02f, -1.908825710e-02f,
       -3.257710487e-03f, -2.861694375e-04f, -1.378540946e-05f},
      {8.003626764e-02f, -5.321709067e-02f, -4.718655348e-02f, 6.618473213e-03f, 1.066005975e-02f,
       2.756291069e-03f, 3.136288433e-04f, 1.833005990e-05f},
      {-3.934079409e-02f, -2.658282965e-02f, 2.059773728e-02f, 9.049494751e-03f, -2.779565053e-03f,
       -1.667850534e-03f, -2.737584291e-04f, -2.069242146e-05f},
      {-1.580337062e-02f, 1.788549498e-02f, 3.745110705e-03f, -5.933099426e-03f, -7.215269143e-04f,
       6.358154933e-04f, 1.735965488e-04f, 1.714472637e-05f},
  };
  const __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
  const __m256 t = _mm256_min_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x), _mm256_set1_ps(4.0f));
  // Piece index: floor(2t), with t = 4 folded into the last piece.
  const __m256i k = _mm256_min_epi32(_mm256_cvttps_epi32(_mm256_add_ps(t, t)), _mm256_set1_epi32(7));
  const __m256 centre = _mm256_fmadd_ps(_mm256_cvtepi32_ps(k), _mm256_set1_ps(0.5f), _mm256_set1_ps(0.25f));
  const __m256 s = _mm256_sub_ps(t, centre);
  __m256 p = _mm256_permutevar8x32_ps(_mm256_load_ps(kCoef[7]), k);
  for (int j = 6; j >= 0; --j) p = _mm256_fmadd_ps(p, s, _mm256_permutevar8x32_ps(_mm256_load_ps(kCoef[j]), k));
  return _mm256_or_ps(p, sign);
}

// dst[i] = src[i] for n halves; the tail goes through the scalar converter.
CXR_AVX2 inline void f16_to_f32(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = fp16_to_fp32(src[i]);
}

// dst[i] = src[i] rounded to the nearest half, ties to even (as fp32_to_fp16).
CXR_AVX2 inline void f32_to_f16(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; ++i) dst[i] = fp32_to_fp16(src[i]);
}

}  // namespace avx2
#endif

}  // namespace cxr
