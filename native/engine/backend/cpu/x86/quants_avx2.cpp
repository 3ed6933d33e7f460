// quants_avx2.cpp - AVX2/FMA/F16C kernels for the hot paths.
//
// Built with plain -O2: the target pragma below turns the instruction sets on for
// this file's functions only, and cpu_kernels.cpp installs them only after the
// CPU said it has them. Standard headers are included *before* the pragma so no
// inline library function gets an AVX2 body that the linker could hand to
// scalar code; below it we call only intrinsics and our own static functions.
//
// Integer dots use the usual AVX2 idiom: _mm256_maddubs_epi16 multiplies
// unsigned by signed bytes and adds pairs into int16, _mm256_madd_epi16 widens
// (and can apply per-sub-block scales) into int32. Each block's int32 sums are
// converted once and folded into a float accumulator with FMA.
#include <cstddef>
#include <cstdint>

#include "types/quant_blocks.h"
#include "types/quants.h"
#include "backend/cpu/kernel_sets.h"

#if defined(__x86_64__) || defined(_M_X64)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

#include <immintrin.h>

namespace cxr {
namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float hsum128(__m128 s) {
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float half(uint16_t h) { return _cvtsh_ss(h); }

// Sum of a[i]*b[i] for 32 signed bytes, as 8 int32 partial sums. maddubs wants
// its first operand unsigned, so move a's sign onto b. Safe for a, b in
// [-127, 127], which is every quantizer's output range.
inline __m256i dot_i8(__m256i a, __m256i b) {
  const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

// 8 int32 -> 8 int8 per 32-bit group, packed back into element order.
inline __m256i pack_i32_to_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b);  // lanes interleave per 128-bit half
  const __m256i cd = _mm256_packs_epi32(c, d);
  const __m256i abcd = _mm256_packs_epi16(ab, cd);
  return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// --- float dots --------------------------------------------------------------

inline __m256 load_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// bf16 is the top half of an fp32: widen to 32 bits and shift into place.
inline __m256 load_bf16(const uint16_t* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

// How each float type widens to f32: eight elements at a time, and one.
struct F32Elems {
  using E = float;
  static __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
  static float load1(float v) { return v; }
};
struct F16Elems {
  using E = uint16_t;
  static __m256 load8(const uint16_t* p) { return load_f16(p); }
  static float load1(uint16_t h) { return half(h); }
};
struct BF16Elems {
  using E = uint16_t;
  static __m256 load8(const uint16_t* p) { return load_bf16(p); }
  static float load1(uint16_t h) { return bf16_to_fp32(h); }
};

// *s = Σ x[i]·y[i], x in T's element type: four FMA chains over 32 elements,
// one over the next 8s, then the tail.
template <typename T>
void float_vec_dot(int64_t n, float* s, const void* vx, const void* vy) {
  const typename T::E* x = static_cast<const typename T::E*>(vx);
  const float* y = static_cast<const float*>(vy);
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_fmadd_ps(T::load8(x + i), _mm256_loadu_ps(y + i), a0);
    a1 = _mm256_fmadd_ps(T::load8(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
    a2 = _mm256_fmadd_ps(T::load8(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
    a3 = _mm256_fmadd_ps(T::load8(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(T::load8(x + i), _mm256_loadu_ps(y + i), a0);
  float sum = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  for (; i < n; ++i) sum += T::load1(x[i]) * y[i];
  *s = sum;
}

// --- f16 / bf16 conversions ----------------------------------------------------

void f16_to_float(const void* src, float* dst, int64_t n) {
  const uint16_t* x = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_f16(x + i));
  for (; i < n; ++i) dst[i] = half(x[i]);
}

// F16C rounds to nearest even and quiets NaNs the same way fp32_to_fp16 does.
void f16_from_float(const float* src, void* dst, int64_t n) {
  uint16_t* y = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) y[i] = fp32_to_fp16(src[i]);
}

void bf16_to_float(const void* src, float* dst, int64_t n) {
  const uint16_t* x = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_bf16(x + i));
  for (; i < n; ++i) dst[i] = bf16_to_fp32(x[i]);
}

// --- Q8_0 / Q4_0 -----------------------------------------------------------------

// Two blocks per iteration into two accumulators, so consecutive FMAs do not
// wait on each other.
void q8_0_vec_dot(int64_t n, float* s, const void* vx, const void* vy) {
  const block_q8_0* x = static_cast<const block_q8_0*>(vx);
  const block_q8_0* y = static_cast<const block_q8_0*>(vy);
  const int64_t nb = n / QK8_0;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    const __m256i p0 = dot_i8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs)),
                              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs)));
    const __m256i p1 = dot_i8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i + 1].qs)),
                              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i + 1].qs)));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half(x[i].d) * half(y[i].d)), _mm256_cvtepi32_ps(p0), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_set1_ps(half(x[i + 1].d) * half(y[i + 1].d)), _mm256_cvtepi32_ps(p1), acc1);
  }
  for (; i < nb; ++i) {
    const __m256i p = dot_i8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs)),
                             _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs)));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half(x[i].d) * half(y[i].d)), _mm256_cvtepi32_ps(p), acc0);
  }
  *s = hsum(_mm256_add_ps(acc0, acc1));
}

// 16 packed bytes -> 32 values in -8..7, element order (low nibbles first).
inline __m256i unpack_q4_0(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
  return _mm256_sub_epi8(_mm256_and_si256(both, _mm256_set1_epi8(15)), _mm256_set1_epi8(8));
}

void q4_0_vec_dot(int64_t n, float* s, const void* vx, const void* vy) {
  const block_q4_0* x = static_cast<const block_q4_0*>(vx);
  const block_q8_0* y = static_cast<const block_q8_0*>(vy);
  const int64_t nb = n / QK4_0;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    const __m256i p0 = dot_i8(unpack_q4_0(x[i].qs), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs)));
    const __m256i p1 =
        dot_i8(unpack_q4_0(x[i + 1].qs), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i + 1].qs)));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half(x[i].d) * half(y[i].d)), _mm256_cvtepi32_ps(p0), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_set1_ps(half(x[i + 1].d) * half(y[i + 1].d)), _mm256_cvtepi32_ps(p1), acc1);
  }
  for (; i < nb; ++i) {
    const __m256i p = dot_i8(unpack_q4_0(x[i].qs), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].qs)));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half(x[i].d) * half(y[i].d)), _mm256_cvtepi32_ps(p), acc0);
  }
  *s = hsum(_mm256_add_ps(acc0, acc1));
}

// roundf() semantics (half away from zero), so the bytes match the reference:
// truncate, then step one away from zero where the dropped part is >= 0.5.
inline __m256 round_half_away(__m256 v) {
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 frac = _mm256_sub_ps(v, t);  // exact
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 big = _mm256_cmp_ps(_mm256_andnot_ps(sign, frac), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  const __m256 step = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f));  // +-1 with v's sign
  return _mm256_add_ps(t, _mm256_and_ps(big, step));
}

// Written without arrays on purpose: GCC spills __m256 arrays to the stack in
// halves, and the full-width reload then stalls on store forwarding.
void q8_0_from_float(const float* src, void* dst, int64_t n) {
  block_q8_0* y = static_cast<block_q8_0*>(dst);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t i = 0; i < n / QK8_0; ++i) {
    const float* x = src + i * QK8_0;
    const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    const __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    const __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                   _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    const float amax = hmax(m);
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = static_cast<uint16_t>(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));  // same bits as fp32_to_fp16
    const __m256 vid = _mm256_set1_ps(id);
    const __m256i q0 = _mm256_cvtps_epi32(round_half_away(_mm256_mul_ps(v0, vid)));
    const __m256i q1 = _mm256_cvtps_epi32(round_half_away(_mm256_mul_ps(v1, vid)));
    const __m256i q2 = _mm256_cvtps_epi32(round_half_away(_mm256_mul_ps(v2, vid)));
    const __m256i q3 = _mm256_cvtps_epi32(round_half_away(_mm256_mul_ps(v3, vid)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), pack_i32_to_i8(q0, q1, q2, q3));
  }
}

// --- Q8_K ----------------------------------------------------------------------

void q8_K_from_float(const float* src, void* dst, int64_t n) {
  block_q8_K* y = static_cast<block_q8_K*>(dst);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const float* x = src + i * QK_K;
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < QK_K; k += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)));
    const float amax = hmax(m);
    block_q8_K& b = y[i];
    if (amax == 0) {
      const __m256i z = _mm256_setzero_si256();
      for (int k = 0; k < QK_K; k += 32) _mm256_storeu_si256(reinterpret_cast<__m256i*>(b.qs + k), z);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(b.bsums), z);
      b.d = 0;
      continue;
    }
    const float iscale = 127.0f / amax;
    const __m256 vs = _mm256_set1_ps(iscale);
    for (int k = 0; k < QK_K; k += 32) {
      // Clamp before rounding, as the reference does, then round ties to even.
      auto quant8 = [&](int j) {
        const __m256 v = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8 * j), vs), lo), hi);
        return _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      };
      const __m256i q0 = quant8(0), q1 = quant8(1), q2 = quant8(2), q3 = quant8(3);
      // Sums of 16 elements: (q0+q1) covers elements k..k+15, (q2+q3) the next 16.
      const __m256i s01 = _mm256_add_epi32(q0, q1);
      const __m256i s23 = _mm256_add_epi32(q2, q3);
      // Two horizontal adds and a fold leave sum(s01) in lane 0 and sum(s23) in lane 1.
      __m256i h = _mm256_hadd_epi32(s01, s23);
      h = _mm256_hadd_epi32(h, h);
      const __m128i t = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
      b.bsums[k / 16] = static_cast<int16_t>(_mm_cvtsi128_si32(t));
      b.bsums[k / 16 + 1] = static_cast<int16_t>(_mm_extract_epi32(t, 1));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(b.qs + k), pack_i32_to_i8(q0, q1, q2, q3));
    }
    b.d = 1.0f / iscale;
  }
}

// --- Q4_K ----------------------------------------------------------------------

// Unpacks the 8 six-bit scales and 8 six-bit mins of a Q4_K block.
inline void q4k_unpack_scales(const uint8_t* s, uint8_t* sc, uint8_t* m) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 63;
    m[j] = s[j + 4] & 63;
    sc[j + 4] = static_cast<uint8_t>((s[j + 8] & 15) | ((s[j] >> 6) << 4));
    m[j + 4] = static_cast<uint8_t>((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
  }
}

void q4_K_vec_dot(int64_t n, float* s, const void* vx, const void* vy) {
  const block_q4_K* x = static_cast<const block_q4_K*>(vx);
  const block_q8_K* y = static_cast<const block_q8_K*>(vy);
  const __m256i low4 = _mm256_set1_epi8(15);
  __m256 acc = _mm256_setzero_ps();
  __m128 acc_m = _mm_setzero_ps();
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const float d = y[i].d * half(x[i].d);
    const float dmin = -y[i].d * half(x[i].dmin);
    alignas(16) uint8_t sc[8], m[8];
    q4k_unpack_scales(x[i].scales, sc, m);

    // Min term: sum_j m_j * (bsums[2j] + bsums[2j+1]).
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].bsums));
    const __m128i bs_pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    const __m128i mins = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(m)));
    acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(_mm_madd_epi16(mins, bs_pairs)), acc_m);

    __m256i sumi = _mm256_setzero_si256();
    const uint8_t* q4 = x[i].qs;
    const int8_t* q8 = y[i].qs;
    for (int c = 0; c < 4; ++c) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q4 + 32 * c));
      const __m256i lo = _mm256_and_si256(q, low4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
      __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8 + 64 * c)));
      __m256i p1 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8 + 64 * c + 32)));
      p0 = _mm256_madd_epi16(p0, _mm256_set1_epi16(sc[2 * c]));
      p1 = _mm256_madd_epi16(p1, _mm256_set1_epi16(sc[2 * c + 1]));
      sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  *s = hsum(acc) + hsum128(acc_m);
}

// --- Q6_K ----------------------------------------------------------------------

void q6_K_vec_dot(int64_t n, float* s, const void* vx, const void* vy) {
  const block_q6_K* x = static_cast<const block_q6_K*>(vx);
  const block_q8_K* y = static_cast<const block_q8_K*>(vy);
  const __m256i low4 = _mm256_set1_epi8(15);
  const __m256i bits45 = _mm256_set1_epi8(0x30);
  // For group k (0..3) of a half: int16 scale 2k in the low 128 bits, 2k+1 in the high.
  const __m256i pick[4] = {
      _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3),
      _mm256_setr_epi8(4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7),
      _mm256_setr_epi8(8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11,
                       10, 11, 10, 11),
      _mm256_setr_epi8(12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 14, 15, 14, 15, 14, 15, 14, 15,
                       14, 15, 14, 15, 14, 15, 14, 15),
  };
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const float d = y[i].d * half(x[i].d);
    const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].scales));
    // The -32 offset, taken out once per block: 32 * sum_j sc_j * bsums_j.
    const __m256i offset = _mm256_madd_epi16(_mm256_cvtepi8_epi16(sc8),
                                             _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[i].bsums)));
    const __m256i sc_half[2] = {_mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(sc8)),
                                _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_srli_si128(sc8, 8)))};
    __m256i sumi = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = x[i].ql + 64 * h;
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qh + 32 * h));
      // 6-bit quants (0..63) of the half's four 32-element groups, see quant_blocks.h.
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(l0, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45)),
          _mm256_or_si256(_mm256_and_si256(l1, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4), _mm256_and_si256(qh, bits45)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                          _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45)),
      };
      const int8_t* q8 = y[i].qs + 128 * h;
      for (int k = 0; k < 4; ++k) {
        const __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8 + 32 * k)));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, _mm256_shuffle_epi8(sc_half[h], pick[k])));
      }
    }
    sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(offset, 5));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  *s = hsum(acc);
}

}  // namespace

namespace detail {

void install_avx2_types(CpuKernels& k) {
  static constexpr TypeKernelSet kSets[] = {
      // type, to_float, from_float, vec_dot (nullptr: keep the reference's)
      {DType::F32, nullptr, nullptr, float_vec_dot<F32Elems>},
      {DType::F16, f16_to_float, f16_from_float, float_vec_dot<F16Elems>},
      {DType::BF16, bf16_to_float, nullptr, float_vec_dot<BF16Elems>},
      {DType::Q4_0, nullptr, nullptr, q4_0_vec_dot},
      {DType::Q8_0, nullptr, q8_0_from_float, q8_0_vec_dot},
      {DType::Q4_K, nullptr, nullptr, q4_K_vec_dot},
      {DType::Q6_K, nullptr, nullptr, q6_K_vec_dot},
      {DType::Q8_K, nullptr, q8_K_from_float, nullptr},
  };
  install_type_kernels(k, kSets, sizeof(kSets) / sizeof(kSets[0]));
}

}  // namespace detail
}  // namespace cxr

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

#endif  // x86-64
