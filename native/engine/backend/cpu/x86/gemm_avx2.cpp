// gemm_avx2.cpp - blocked matmul kernels for CPUs with AVX2, FMA and F16C
// (Haswell, Zen 1-3 and later). See gemm.h for the design; gemm_avx512.cpp is
// the same design on 16 lanes with VNNI.
//
// Integer panels are 8 rows wide, one row per 32-bit lane. AVX2 has no 4-byte
// dot instruction, so a block step is VPMADDUBSW (unsigned x signed bytes,
// pairs summed into int16) and VPMADDWD (int16 pairs into int32):
//   Q4_0: raw nibbles (0..15) are the unsigned operand; the int16 pair sums
//         stay below 8 * 2 * 15 * 127 = 30480 over a whole block, so the
//         widening happens once per block.
//   Q8_0: weights stay signed and the sign moves onto the activation
//         (|w| * sign(x, w)), widening every step: 2 * 128 * 127 fits int16
//         once, not twice.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "backend/cpu/gemm.h"
#include "backend/cpu/kernel_sets.h"
#include "backend/cpu/repack.h"

#if defined(__x86_64__) || defined(_M_X64)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

#include <immintrin.h>

#include "backend/cpu/gemm_float.h"
#include "backend/cpu/gemm_x8.h"

namespace cxr {
namespace detail {
namespace {

constexpr int kRows = 8;                     // rows per integer panel (lanes)
constexpr size_t kBlockBytes = 8 * 32 + 32;  // one packed block: 8 vectors of quants, 8 float scales
constexpr int kTile = 4;                     // tokens per register tile

inline int32_t load_i32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

int int_offset(DType t) { return t == DType::Q4_0 ? 8 : 0; }

size_t int_panel_bytes(int64_t cols) { return static_cast<size_t>(cols / 32) * kBlockBytes; }

// Eight fp16 values to floats, from plain 16-bit loads: a gather does it in
// one instruction but is microcoded and slow on AMD cores.
inline __m256 halves8_to_float(const uint16_t* h) {
  __m128i v = _mm_cvtsi32_si128(h[0]);
  v = _mm_insert_epi16(v, h[1], 1);
  v = _mm_insert_epi16(v, h[2], 2);
  v = _mm_insert_epi16(v, h[3], 3);
  v = _mm_insert_epi16(v, h[4], 4);
  v = _mm_insert_epi16(v, h[5], 5);
  v = _mm_insert_epi16(v, h[6], 6);
  v = _mm_insert_epi16(v, h[7], 7);
  return _mm256_cvtph_ps(v);
}

// out[g], g = 0..3: dword g of the 16 bytes at row[r] + off, in lane r. Rows r
// and r + 4 share a register (one per 128-bit half), then the classic 4x4
// dword transpose, which AVX2's in-lane unpacks do in both halves at once.
inline void transpose_rows(const uint8_t* const* row, size_t off, __m256i* out) {
  __m256i y[4];
  for (int r = 0; r < 4; ++r)
    y[r] = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(row[r + 4] + off),
                               reinterpret_cast<const __m128i*>(row[r] + off));
  const __m256i t0 = _mm256_unpacklo_epi32(y[0], y[1]);  // r0d0 r1d0 r0d1 r1d1
  const __m256i t1 = _mm256_unpacklo_epi32(y[2], y[3]);  // r2d0 r3d0 r2d1 r3d1
  const __m256i t2 = _mm256_unpackhi_epi32(y[0], y[1]);  // r0d2 r1d2 r0d3 r1d3
  const __m256i t3 = _mm256_unpackhi_epi32(y[2], y[3]);  // r2d2 r3d2 r2d3 r3d3
  out[0] = _mm256_unpacklo_epi64(t0, t1);
  out[1] = _mm256_unpackhi_epi64(t0, t1);
  out[2] = _mm256_unpacklo_epi64(t2, t3);
  out[3] = _mm256_unpackhi_epi64(t2, t3);
}

template <DType T, int NT>
inline void dot_block(const __m256i* q, __m256 dw, const QActs& x, int64_t b, int64_t t0, __m256* acc) {
  const int8_t* xq = x.q + (b * x.n + t0) * 32;
  const float* xd = x.d + b * x.n + t0;
  const int32_t* xc = x.corr + b * x.n + t0;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i s[NT];
  if (T == DType::Q4_0) {
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) s[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t)
        s[t] = _mm256_add_epi16(
            s[t], _mm256_maddubs_epi16(q[k], _mm256_set1_epi32(load_i32(xq + 32 * t + 4 * k))));
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) s[t] = _mm256_add_epi32(_mm256_madd_epi16(s[t], ones), _mm256_set1_epi32(xc[t]));
  } else {
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) s[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      const __m256i aw = _mm256_abs_epi8(q[k]);
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) {
        const __m256i xs = _mm256_sign_epi8(_mm256_set1_epi32(load_i32(xq + 32 * t + 4 * k)), q[k]);
        s[t] = _mm256_add_epi32(s[t], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, xs), ones));
      }
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < NT; ++t)
    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[t]), _mm256_mul_ps(dw, _mm256_set1_ps(xd[t])), acc[t]);
}

inline void store_rows(float* y, int nr, __m256 v, const float* bias) {
  if (nr == kRows) {
    if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias));
    _mm256_storeu_ps(y, v);
    return;
  }
  alignas(32) float tmp[kRows];
  _mm256_store_ps(tmp, v);
  for (int i = 0; i < nr; ++i) y[i] = tmp[i] + (bias ? bias[i] : 0.0f);
}

// Copies a panel of nr <= 8 rows into buf, block by block, as the tile wants
// it: 8 vectors of quants (vector k holds elements 4k..4k+3 of every row, one
// row per lane; Q4_0's as raw nibbles) and the 8 block scales as floats. Rows
// past nr repeat the last one; their lanes are never stored.
template <DType T>
void pack(const uint8_t* w, size_t wrow, int nr, int64_t nb, uint8_t* buf) {
  constexpr size_t kBB = T == DType::Q4_0 ? 18 : 34;  // block bytes: f16 scale, then quants
  const uint8_t* row[kRows];
  for (int r = 0; r < kRows; ++r) row[r] = w + static_cast<size_t>(r < nr ? r : nr - 1) * wrow;
  for (int64_t b = 0; b < nb; ++b) {
    const size_t off = static_cast<size_t>(b) * kBB;
    __m256i q[8];
    transpose_rows(row, off + 2, q);
    if constexpr (T == DType::Q4_0) {
      // Byte j of a Q4_0 block holds element j (low nibble) and j + 16 (high).
      const __m256i low4 = _mm256_set1_epi8(15);
      for (int g = 0; g < 4; ++g) {
        q[g + 4] = _mm256_and_si256(_mm256_srli_epi32(q[g], 4), low4);
        q[g] = _mm256_and_si256(q[g], low4);
      }
    } else {
      transpose_rows(row, off + 18, q + 4);
    }
    uint16_t h[kRows];
    for (int r = 0; r < kRows; ++r) std::memcpy(&h[r], row[r] + off, 2);
    uint8_t* dst = buf + b * kBlockBytes;
    for (int k = 0; k < 8; ++k) _mm256_store_si256(reinterpret_cast<__m256i*>(dst + 32 * k), q[k]);
    _mm256_store_ps(reinterpret_cast<float*>(dst + 256), halves8_to_float(h));
  }
}

template <DType T, int NT>
void packed_tile(const uint8_t* buf, const QActs& x, int64_t t0, int nr, float* y, int64_t ldy, const float* bias) {
  __m256 acc[NT];
  #pragma GCC unroll 8
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < x.nb; ++b) {
    const uint8_t* p = buf + b * kBlockBytes;
    __m256i q[8];
    for (int k = 0; k < 8; ++k) q[k] = _mm256_load_si256(reinterpret_cast<const __m256i*>(p + 32 * k));
    dot_block<T, NT>(q, _mm256_load_ps(reinterpret_cast<const float*>(p + 256)), x, b, t0, acc);
  }
  #pragma GCC unroll 8
  for (int t = 0; t < NT; ++t) store_rows(y + (t0 + t) * ldy, nr, acc[t], bias);
}

// Every token of x against a packed panel of nr rows, kTile tokens at a time.
template <DType T>
void run_tiles(const uint8_t* buf, const QActs& x, int nr, float* y, int64_t ldy, const float* bias) {
  int64_t t0 = 0;
  for (; t0 + kTile <= x.n; t0 += kTile) packed_tile<T, kTile>(buf, x, t0, nr, y, ldy, bias);
  switch (x.n - t0) {
    case 1: packed_tile<T, 1>(buf, x, t0, nr, y, ldy, bias); break;
    case 2: packed_tile<T, 2>(buf, x, t0, nr, y, ldy, bias); break;
    case 3: packed_tile<T, 3>(buf, x, t0, nr, y, ldy, bias); break;
    default: break;
  }
}

template <DType T>
void int_panel_t(const uint8_t* w, size_t wrow, int nr, const QActs& x, float* y, int64_t ldy, const float* bias,
                 uint8_t* buf) {
  pack<T>(w, wrow, nr, x.nb, buf);
  run_tiles<T>(buf, x, nr, y, ldy, bias);
}

void int_panel(DType t, const uint8_t* w, size_t wrow, int nr, const QActs& x, float* y, int64_t ldy,
               const float* bias, uint8_t* buf) {
  if (t == DType::Q4_0)
    int_panel_t<DType::Q4_0>(w, wrow, nr, x, y, ldy, bias, buf);
  else
    int_panel_t<DType::Q8_0>(w, wrow, nr, x, y, ldy, bias, buf);
}

// An x8 group is already a panel but for Q4_0's nibble split: chunk c holds
// quant dword c of every row, one row per lane (repack.h).
void x8_panel(DType t, const uint8_t* w, int nr, const QActs& x, float* y, int64_t ldy, const float* bias,
              uint8_t* buf) {
  const size_t gb = x8_block_bytes(t);
  const __m256i low4 = _mm256_set1_epi8(15);
  for (int64_t b = 0; b < x.nb; ++b) {
    const uint8_t* src = w + b * gb;
    uint8_t* dst = buf + b * kBlockBytes;
    auto* q = reinterpret_cast<__m256i*>(dst);
    for (int c = 0; c < (t == DType::Q4_0 ? 4 : 8); ++c) {
      const __m256i v = x8_chunk(src, c);
      if (t == DType::Q4_0) {
        _mm256_store_si256(q + c, _mm256_and_si256(v, low4));
        _mm256_store_si256(q + c + 4, _mm256_and_si256(_mm256_srli_epi16(v, 4), low4));
      } else {
        _mm256_store_si256(q + c, v);  // Q8_0 stays signed here (int_offset 0)
      }
    }
    _mm256_store_ps(reinterpret_cast<float*>(dst + 256), x8_scales(src));
  }
  if (t == DType::Q4_0) run_tiles<DType::Q4_0>(buf, x, nr, y, ldy, bias);
  else run_tiles<DType::Q8_0>(buf, x, nr, y, ldy, bias);
}

// --- decode: one token ---------------------------------------------------------
//
// As in gemm_avx512.cpp: one block (Q8_0) or two (Q4_0) per 256-bit step,
// block scales eight at a time, the offset correction one FMA per eight
// blocks. The scales come from eight 16-bit loads: with a gather instead the
// kernel managed 14 GB/s per core from L2 on Zen 4, with loads 22.

// Software prefetch distance on the decode route (see gemm_avx512.cpp).
constexpr int kPrefetchBytes = 1024;

template <DType T>
inline __m256 gemv_block(const uint8_t* blk, const int8_t* xq, const float* p, __m256 acc) {
  const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
  __m256i prod;
  if (T == DType::Q4_0) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
    const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
    prod = _mm256_maddubs_epi16(_mm256_and_si256(both, _mm256_set1_epi8(15)), xv);
  } else {
    const __m256i wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
    prod = _mm256_maddubs_epi16(_mm256_abs_epi8(wq), _mm256_sign_epi8(xv, wq));
  }
  const __m256i s = _mm256_madd_epi16(prod, _mm256_set1_epi16(1));
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_broadcast_ss(p), acc);
}

inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Q4_0 blocks b and b + 1 against activations in group order (gemm.h; groups
// of two here); p holds block b's scale in lanes 0..3 and block b + 1's in
// lanes 4..7. The two int16 products stay below 2 * 2 * 15 * 127 before
// widening.
inline __m256 gemv_pair_q4(const uint8_t* blk, const int8_t* xq, __m256 p, __m256 acc) {
  const __m256i v = _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 18 + 2)), 1);
  const __m256i low4 = _mm256_set1_epi8(15);
  const __m256i lo = _mm256_maddubs_epi16(_mm256_and_si256(v, low4),
                                          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq)));
  const __m256i hi = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), low4),
                                          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32)));
  const __m256i s = _mm256_madd_epi16(_mm256_add_epi16(lo, hi), _mm256_set1_epi16(1));
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), p, acc);
}

// The fp16 scales of eight consecutive blocks (kBB bytes apart) as floats.
template <int kBB>
inline __m256 scales8(const uint8_t* g) {
  uint16_t h[8];
  for (int j = 0; j < 8; ++j) std::memcpy(&h[j], g + j * kBB, 2);
  return halves8_to_float(h);
}

template <DType T>
float gemv_row(const uint8_t* w, const QActs& x) {
  constexpr int kBB = T == DType::Q4_0 ? 18 : 34;  // block bytes
  const __m256i pair = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, corr = a0;
  alignas(32) float p[8];
  int64_t b = 0;
  for (; b + 8 <= x.nb; b += 8) {
    const uint8_t* g = w + b * kBB;
    for (int l = 0; l < 8 * kBB; l += 64)
      _mm_prefetch(reinterpret_cast<const char*>(g + kPrefetchBytes + l), _MM_HINT_T0);
    const __m256 pv = _mm256_mul_ps(scales8<kBB>(g), _mm256_loadu_ps(x.d + b));
    corr = _mm256_fmadd_ps(pv, _mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.corr + b))),
                           corr);
    const int8_t* xq = x.q + b * 32;
    if (T == DType::Q4_0) {
      a0 = gemv_pair_q4(g, xq, _mm256_permutevar8x32_ps(pv, pair), a0);
      a1 = gemv_pair_q4(g + 2 * kBB, xq + 64, _mm256_permutevar8x32_ps(pv, _mm256_add_epi32(pair, _mm256_set1_epi32(2))), a1);
      a2 = gemv_pair_q4(g + 4 * kBB, xq + 128, _mm256_permutevar8x32_ps(pv, _mm256_add_epi32(pair, _mm256_set1_epi32(4))), a2);
      a3 = gemv_pair_q4(g + 6 * kBB, xq + 192, _mm256_permutevar8x32_ps(pv, _mm256_add_epi32(pair, _mm256_set1_epi32(6))), a3);
    } else {
      _mm256_store_ps(p, pv);
      for (int j = 0; j < 8; j += 4) {
        a0 = gemv_block<T>(g + j * kBB, xq + j * 32, p + j, a0);
        a1 = gemv_block<T>(g + (j + 1) * kBB, xq + (j + 1) * 32, p + j + 1, a1);
        a2 = gemv_block<T>(g + (j + 2) * kBB, xq + (j + 2) * 32, p + j + 2, a2);
        a3 = gemv_block<T>(g + (j + 3) * kBB, xq + (j + 3) * 32, p + j + 3, a3);
      }
    }
  }
  float tail = 0;
  for (; b < x.nb; ++b) {
    uint16_t h;
    std::memcpy(&h, w + b * kBB, 2);
    const float pb = _cvtsh_ss(h) * x.d[b];
    tail += pb * static_cast<float>(x.corr[b]);
    if (T == DType::Q4_0 && b + 1 < x.nb) {
      std::memcpy(&h, w + (b + 1) * kBB, 2);
      const float pb1 = _cvtsh_ss(h) * x.d[b + 1];
      tail += pb1 * static_cast<float>(x.corr[b + 1]);
      a0 = gemv_pair_q4(w + b * kBB, x.q + b * 32, _mm256_set_m128(_mm_set1_ps(pb1), _mm_set1_ps(pb)), a0);
      ++b;
      continue;
    }
    a0 = gemv_block<T>(w + b * kBB, x.q + b * 32, &pb, a0);
  }
  return hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3))) + hsum256(corr) + tail;
}

void int_gemv(DType t, const uint8_t* w, size_t wrow, int64_t nrows, const QActs& x, float* y, const float* bias) {
  for (int64_t r = 0; r < nrows; ++r) {
    const float v = t == DType::Q4_0 ? gemv_row<DType::Q4_0>(w + r * wrow, x) : gemv_row<DType::Q8_0>(w + r * wrow, x);
    y[r] = v + (bias ? bias[r] : 0.0f);
  }
}

// --- float weights -------------------------------------------------------------
//
// As in gemm_avx512.cpp, with 16-row sub-panels (two vectors) and a 6-token
// register tile: 12 accumulators, two weight vectors and a broadcast fill the
// 16 registers.

constexpr int kChunkRows = 64;
constexpr int kKBlock = 256;
constexpr int kSub = 16;
constexpr int kFTile = 6;

size_t float_chunk_bytes() { return sizeof(float) * kChunkRows * kKBlock; }

inline __m256i lane_mask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

template <int NT>
void float_tile(const float* p, int kc, const float* x, int64_t ldx, float* y, int64_t ldy, int left, bool first,
                const float* bias) {
  const __m256i m0 = lane_mask(left), m1 = lane_mask(left - 8);
  __m256 a0[NT], a1[NT];
  #pragma GCC unroll 8
  for (int t = 0; t < NT; ++t) {
    if (first) {
      a0[t] = bias ? _mm256_maskload_ps(bias, m0) : _mm256_setzero_ps();
      a1[t] = bias ? _mm256_maskload_ps(bias + 8, m1) : _mm256_setzero_ps();
    } else {
      a0[t] = _mm256_maskload_ps(y + t * ldy, m0);
      a1[t] = _mm256_maskload_ps(y + t * ldy + 8, m1);
    }
  }
  for (int k = 0; k < kc; ++k) {
    const __m256 w0 = _mm256_load_ps(p + k * kSub), w1 = _mm256_load_ps(p + k * kSub + 8);
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) {
      const __m256 xb = _mm256_broadcast_ss(x + t * ldx + k);
      a0[t] = _mm256_fmadd_ps(w0, xb, a0[t]);
      a1[t] = _mm256_fmadd_ps(w1, xb, a1[t]);
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < NT; ++t) {
    _mm256_maskstore_ps(y + t * ldy, m0, a0[t]);
    _mm256_maskstore_ps(y + t * ldy + 8, m1, a1[t]);
  }
}

void float_chunk(DType t, const uint8_t* w, size_t wrow, int nr, int64_t cols, const float* x, int64_t ldx,
                 int64_t n, float* y, int64_t ldy, const float* bias, float* buf) {
  float_chunk_loop<kSub, kKBlock, kFTile>(
      t, w, wrow, nr, cols, x, ldx, n, y, ldy, bias, buf,
      [&](int nt, const float* p, int kc, const float* xs, float* ys, int left, bool first, const float* bs) {
        switch (nt) {
          case 6: float_tile<6>(p, kc, xs, ldx, ys, ldy, left, first, bs); break;
          case 5: float_tile<5>(p, kc, xs, ldx, ys, ldy, left, first, bs); break;
          case 4: float_tile<4>(p, kc, xs, ldx, ys, ldy, left, first, bs); break;
          case 3: float_tile<3>(p, kc, xs, ldx, ys, ldy, left, first, bs); break;
          case 2: float_tile<2>(p, kc, xs, ldx, ys, ldy, left, first, bs); break;
          default: float_tile<1>(p, kc, xs, ldx, ys, ldy, left, first, bs); break;
        }
      });
}

}  // namespace

// Q4_0 x8 decode: eight rows per 256-bit vector, one per lane (repack.h). Per
// block, four 32-byte loads give all eight rows' quants; each nibble half
// meets one broadcast dword of the activations in VPMADDUBSW. The eight int16
// pair sums stay under 8 * 2 * 15 * 128 = 30720 over a block, so they widen
// once per block, and the eight scales are one load and one convert.
void q4x8_gemv_avx2(const uint8_t* w, int64_t groups, const QActs& x, float* y, const float* bias) {
  const __m256i low4 = _mm256_set1_epi8(15);
  const __m256i ones = _mm256_set1_epi16(1);
  x8_gemv_loop<DType::Q4_0, kPrefetchBytes>(w, groups, x, y, bias, [&](const uint8_t* p, const int8_t* xq, int64_t b) {
    __m256i s16 = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i v = x8_chunk(p, c);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
      s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(_mm256_and_si256(v, low4), x8_quad(xq, c)));
      s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(hi, x8_quad(xq, c + 4)));
    }
    return _mm256_add_epi32(_mm256_madd_epi16(s16, ones), _mm256_set1_epi32(x.corr[b]));
  });
}

// a + b in int16 lanes, as an add the compiler may not reassociate: with
// plain adds GCC rebuilt q4x8_gemv_nt's running sums as trees over all 32 of
// a block's products, which kept them all live and spilled them to the stack.
inline __m256i add16_in_place(__m256i a, __m256i b) {
#if defined(__GNUC__)
  asm("vpaddw %1, %0, %0" : "+x"(a) : "x"(b));
  return a;
#else
  return _mm256_add_epi16(a, b);
#endif
}

template <int NT>
void q4x8_gemv_nt(const uint8_t* w, int64_t groups, const QActs* x, float* const* y, const float* bias) {
  constexpr size_t kGroupBlock = x8_block_bytes(DType::Q4_0);
  const __m256i low4 = _mm256_set1_epi8(15);
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t nb = x[0].nb;
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* p = w + static_cast<size_t>(g * nb) * kGroupBlock;
    __m256 acc[NT];
    #pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b, p += kGroupBlock) {
      for (size_t l = 0; l < kGroupBlock; l += 64)
        _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchBytes + l), _MM_HINT_T0);
      // A chunk at a time, so only its two nibble vectors are live beside the
      // NT int16 sums and NT accumulators (16 registers in all for NT = 4);
      // add16_in_place keeps the compiler from undoing that.
      __m256i s16[NT];
      #pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) s16[t] = _mm256_setzero_si256();
      #pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        const __m256i v = x8_chunk(p, c);
        const __m256i lo = _mm256_and_si256(v, low4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
        #pragma GCC unroll 4
        for (int t = 0; t < NT; ++t) {
          // As q4x8_gemv_avx2 forms a block's dot (integer sums: exact in any
          // order, and every partial sum stays within the block's bound).
          const int8_t* xq = x[t].q + b * 32;
          s16[t] = add16_in_place(s16[t], _mm256_maddubs_epi16(lo, x8_quad(xq, c)));
          s16[t] = add16_in_place(s16[t], _mm256_maddubs_epi16(hi, x8_quad(xq, c + 4)));
        }
      }
      const __m256 scales = x8_scales(p);
      #pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) {
        const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(s16[t], ones), _mm256_set1_epi32(x[t].corr[b]));
        const __m256 d = _mm256_mul_ps(scales, _mm256_set1_ps(x[t].d[b]));
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc[t]);
      }
    }
    #pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) {
      __m256 a = acc[t];
      if (bias) a = _mm256_add_ps(a, _mm256_loadu_ps(bias + 8 * g));
      _mm256_storeu_ps(y[t] + 8 * g, a);
    }
  }
}

void q4x8_gemv_n_avx2(const uint8_t* w, int64_t groups, const QActs* x, int nt, float* const* y, const float* bias) {
  switch (nt) {
    case 4: return q4x8_gemv_nt<4>(w, groups, x, y, bias);
    case 3: return q4x8_gemv_nt<3>(w, groups, x, y, bias);
    case 2: return q4x8_gemv_nt<2>(w, groups, x, y, bias);
    default: return q4x8_gemv_nt<1>(w, groups, x, y, bias);
  }
}

namespace {

// Q8_0 x8 decode: eight chunks of 32 bytes per block, each one quant dword of
// eight rows. As in the panels, the sign moves onto the activation (|w| *
// sign(x, w)) for VPMADDUBSW, whose pair sums (up to 2 * 127 * 127) then
// widen at once.
void q8x8_gemv(const uint8_t* w, int64_t groups, const QActs& x, float* y, const float* bias) {
  const __m256i ones = _mm256_set1_epi16(1);
  x8_gemv_loop<DType::Q8_0, kPrefetchBytes>(w, groups, x, y, bias, [&](const uint8_t* p, const int8_t* xq, int64_t) {
    __m256i s = _mm256_setzero_si256();  // int_offset(Q8_0) is 0 here: no correction
    for (int c = 0; c < 8; ++c) {
      const __m256i v = x8_chunk(p, c);
      const __m256i xs = _mm256_sign_epi8(x8_quad(xq, c), v);
      s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(v), xs), ones));
    }
    return s;
  });
}

void x8_gemv(DType t, const uint8_t* w, int64_t groups, const QActs& x, float* y, const float* bias) {
  if (t == DType::Q4_0) q4x8_gemv_avx2(w, groups, x, y, bias);
  else q8x8_gemv(w, groups, x, y, bias);
}

}  // namespace

void install_avx2_matmul(CpuKernels& k, unsigned parts) {
  constexpr PanelKernels panels = {kRows,      int_offset, int_panel_bytes,   int_panel, x8_panel,
                                   kChunkRows, kKBlock,    float_chunk_bytes, float_chunk};
  constexpr GemvKernels gemv = {int_offset, int_gemv, 2, x8_gemv, q4x8_gemv_n_avx2, kX8GemvTokens};
  if (parts & kPanels) k.panels = panels;
  if (parts & kDecode) k.gemv = gemv;
}

}  // namespace detail
}  // namespace cxr

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

#endif  // x86-64
