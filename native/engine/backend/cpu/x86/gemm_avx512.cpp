// gemm_avx512.cpp - blocked matmul kernels for CPUs with AVX-512 VNNI
// (Ice Lake, Sapphire Rapids, Zen 4 and later). See gemm.h for the design.
//
// Like quants_avx2.cpp, the instruction sets are switched on for this file's
// functions only, by the pragma below; matmul.cpp calls in only after the CPU
// reported them. Standard headers come before the pragma.
//
// Integer panels are 16 rows wide, one row per 32-bit lane: VPDPBUSD then
// multiplies four unsigned weight bytes of every row by the same four
// (broadcast) activation bytes and adds them into the row's lane, so a 32-
// element block costs 8 instructions for 16 rows, and the block scale one
// convert and one FMA per token.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "backend/cpu/gemm.h"
#include "backend/cpu/kernel_sets.h"
#include "backend/cpu/repack.h"

#if defined(__x86_64__) || defined(_M_X64)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"))), \
                             apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")
// GCC 12's AVX-512 headers build "undefined" vectors as `__m512 __Y = __Y;`,
// which -Wmaybe-uninitialized reports at every inlined use.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include "backend/cpu/gemm_float.h"
#include "backend/cpu/gemm_x8.h"

namespace cxr {
namespace detail {
namespace {

constexpr int kRows = 16;                    // rows per integer panel (lanes)
constexpr size_t kBlockBytes = 8 * 64 + 64;  // one packed block: 8 vectors of quants, 16 float scales
constexpr int kTile = 8;                     // tokens per register tile (packed path)

inline int32_t load_i32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

int int_offset(DType t) { return t == DType::Q4_0 ? 8 : 128; }

size_t int_panel_bytes(int64_t cols) { return static_cast<size_t>(cols / 32) * kBlockBytes; }

// Byte offsets of the panel's rows; rows past nr repeat the last one, so every
// gather reads mapped memory (their results are never stored).
inline __m512i row_offsets(size_t wrow, int nr) {
  alignas(64) int32_t off[kRows];
  for (int i = 0; i < kRows; ++i) off[i] = static_cast<int32_t>((i < nr ? i : nr - 1) * wrow);
  return _mm512_load_si512(off);
}

inline void store_rows(float* y, __mmask16 m, __m512 v, const float* bias) {
  if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias));
  _mm512_mask_storeu_ps(y, m, v);
}

// Tokens [t0, t0 + NT) against one block, accumulated into acc.
template <int NT>
inline void dot_block(const __m512i* q, __m512 dw, const QActs& x, int64_t b, int64_t t0, __m512* acc) {
  const int8_t* xq = x.q + (b * x.n + t0) * 32;
  const float* xd = x.d + b * x.n + t0;
  const int32_t* xc = x.corr + b * x.n + t0;
  __m512i s[NT];
#pragma GCC unroll 8
  for (int t = 0; t < NT; ++t) s[t] = _mm512_set1_epi32(xc[t]);
#pragma GCC unroll 8
  for (int k = 0; k < 8; ++k) {
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t)
      s[t] = _mm512_dpbusd_epi32(s[t], q[k], _mm512_set1_epi32(load_i32(xq + 32 * t + 4 * k)));
  }
#pragma GCC unroll 8
  for (int t = 0; t < NT; ++t)
    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t]), _mm512_mul_ps(dw, _mm512_set1_ps(xd[t])), acc[t]);
}

// Lane indices that pick dword g of four rows from each of two registers that
// hold four rows' 16 bytes, one row per 128-bit lane (see transpose_rows).
struct RowTranspose {
  alignas(64) int32_t idx[4][16];
  constexpr RowTranspose() : idx() {
    for (int g = 0; g < 4; ++g)
      for (int j = 0; j < 16; ++j) idx[g][j] = (j & 4 ? 16 : 0) + 4 * (j & 3) + g;
  }
};
constexpr RowTranspose kRowTranspose;

// out[g], g = 0..3: dword g of the 16 bytes at row[r] + off, in lane r. Each
// row's bytes are one 128-bit load and four rows fill a register, a lane per
// row; dword g of all sixteen rows is then two cross-register permutes (rows
// 0-7 and 8-15, each into the low half of its result) and one 128-bit-lane
// shuffle that joins the halves. Packing with a gather per dword instead
// (microcoded, slow on Zen 4) was ~18% of a 7B Q4_0 prefill.
inline void transpose_rows(const uint8_t* const* row, size_t off, const __m512i* perm, __m512i* out) {
  __m512i four[4];  // rows 4i .. 4i+3, one per 128-bit lane
  for (int i = 0; i < 4; ++i) {
    auto at = [&](int r) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(row[4 * i + r] + off)); };
    __m512i v = _mm512_castsi128_si512(at(0));
    v = _mm512_inserti32x4(v, at(1), 1);
    v = _mm512_inserti32x4(v, at(2), 2);
    four[i] = _mm512_inserti32x4(v, at(3), 3);
  }
  for (int g = 0; g < 4; ++g) {
    const __m512i lo = _mm512_permutex2var_epi32(four[0], perm[g], four[1]);
    const __m512i hi = _mm512_permutex2var_epi32(four[2], perm[g], four[3]);
    out[g] = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(1, 0, 1, 0));
  }
}

// Copies a panel of nr <= 16 rows into buf, block by block, as VPDPBUSD wants
// it: 8 vectors of unsigned quants (vector k holds elements 4k..4k+3 of every
// row, one row per lane) and the 16 block scales as floats. Rows past nr
// repeat the last one; their lanes are never stored.
template <DType T>
void pack(const uint8_t* w, size_t wrow, int nr, int64_t nb, uint8_t* buf) {
  constexpr size_t kBB = T == DType::Q4_0 ? 18 : 34;  // block bytes: f16 scale, then quants
  const __m512i idx = row_offsets(wrow, nr);
  const uint8_t* row[kRows];
  for (int r = 0; r < kRows; ++r) row[r] = w + static_cast<size_t>(r < nr ? r : nr - 1) * wrow + 2;
  __m512i perm[4];
  for (int g = 0; g < 4; ++g) perm[g] = _mm512_load_si512(kRowTranspose.idx[g]);
  for (int64_t b = 0; b < nb; ++b) {
    const size_t off = static_cast<size_t>(b) * kBB;
    __m512i q[8];
    if constexpr (T == DType::Q4_0) {
      // Byte j of a Q4_0 block holds element j (low nibble) and j + 16 (high).
      const __m512i low4 = _mm512_set1_epi8(15);
      transpose_rows(row, off, perm, q);
      for (int g = 0; g < 4; ++g) {
        q[g + 4] = _mm512_and_si512(_mm512_srli_epi32(q[g], 4), low4);
        q[g] = _mm512_and_si512(q[g], low4);
      }
    } else {
      // Q8_0's signed quants, offset by 128 to be VPDPBUSD's unsigned operand.
      const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
      transpose_rows(row, off, perm, q);
      transpose_rows(row, off + 16, perm, q + 4);
      for (int k = 0; k < 8; ++k) q[k] = _mm512_xor_si512(q[k], flip);
    }
    uint8_t* dst = buf + b * kBlockBytes;
    for (int k = 0; k < 8; ++k) _mm512_store_si512(dst + 64 * k, q[k]);
    // The scales: one gather per block is cheap next to the quants'.
    const __m512i d16 = _mm512_i32gather_epi32(idx, w + off, 1);
    _mm512_store_ps(dst + 512, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d16)));
  }
}

template <int NT>
void packed_tile(const uint8_t* buf, const QActs& x, int64_t t0, __mmask16 m, float* y, int64_t ldy,
                 const float* bias) {
  __m512 acc[NT];
  #pragma GCC unroll 8
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < x.nb; ++b) {
    const uint8_t* p = buf + b * kBlockBytes;
    __m512i q[8];
    for (int k = 0; k < 8; ++k) q[k] = _mm512_load_si512(p + 64 * k);
    dot_block<NT>(q, _mm512_load_ps(p + 512), x, b, t0, acc);
  }
  #pragma GCC unroll 8
  for (int t = 0; t < NT; ++t) store_rows(y + (t0 + t) * ldy, m, acc[t], bias);
}

// Every token of x against a packed panel of nr rows, kTile tokens at a time.
void run_tiles(const uint8_t* buf, const QActs& x, int nr, float* y, int64_t ldy, const float* bias) {
  const __mmask16 m = static_cast<__mmask16>((1u << nr) - 1);
  int64_t t0 = 0;
  for (; t0 + kTile <= x.n; t0 += kTile) packed_tile<kTile>(buf, x, t0, m, y, ldy, bias);
  switch (x.n - t0) {
    case 1: packed_tile<1>(buf, x, t0, m, y, ldy, bias); break;
    case 2: packed_tile<2>(buf, x, t0, m, y, ldy, bias); break;
    case 3: packed_tile<3>(buf, x, t0, m, y, ldy, bias); break;
    case 4: packed_tile<4>(buf, x, t0, m, y, ldy, bias); break;
    case 5: packed_tile<5>(buf, x, t0, m, y, ldy, bias); break;
    case 6: packed_tile<6>(buf, x, t0, m, y, ldy, bias); break;
    case 7: packed_tile<7>(buf, x, t0, m, y, ldy, bias); break;
    default: break;
  }
}

template <DType T>
void int_panel_t(const uint8_t* w, size_t wrow, int nr, const QActs& x, float* y, int64_t ldy, const float* bias,
                 uint8_t* buf) {
  pack<T>(w, wrow, nr, x.nb, buf);
  run_tiles(buf, x, nr, y, ldy, bias);
}

void int_panel(DType t, const uint8_t* w, size_t wrow, int nr, const QActs& x, float* y, int64_t ldy,
               const float* bias, uint8_t* buf) {
  if (t == DType::Q4_0)
    int_panel_t<DType::Q4_0>(w, wrow, nr, x, y, ldy, bias, buf);
  else
    int_panel_t<DType::Q8_0>(w, wrow, nr, x, y, ldy, bias, buf);
}

// x8 panels: sixteen rows are two groups (repack.h), whose chunk c each hold
// quant dword c of eight rows, so a packed vector is two 256-bit loads side by
// side. With nr == 8 the second half repeats the first (and is not stored).
void x8_panel(DType t, const uint8_t* w, int nr, const QActs& x, float* y, int64_t ldy, const float* bias,
              uint8_t* buf) {
  const size_t gb = x8_block_bytes(t);
  const uint8_t* w2 = nr > 8 ? w + static_cast<size_t>(x.nb) * gb : w;
  const __m512i low4 = _mm512_set1_epi8(15);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t b = 0; b < x.nb; ++b) {
    const uint8_t* s0 = w + b * gb;
    const uint8_t* s1 = w2 + b * gb;
    auto* q = reinterpret_cast<__m512i*>(buf + b * kBlockBytes);
    for (int c = 0; c < (t == DType::Q4_0 ? 4 : 8); ++c) {
      const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(x8_chunk(s0, c)), x8_chunk(s1, c), 1);
      if (t == DType::Q4_0) {
        _mm512_store_si512(q + c, _mm512_and_si512(v, low4));
        _mm512_store_si512(q + c + 4, _mm512_and_si512(_mm512_srli_epi16(v, 4), low4));
      } else {
        _mm512_store_si512(q + c, _mm512_xor_si512(v, flip));  // unsigned, offset 128
      }
    }
    const __m256i d = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s0))),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(s1)), 1);
    _mm512_store_ps(buf + b * kBlockBytes + 512, _mm512_cvtph_ps(d));
  }
  run_tiles(buf, x, nr, y, ldy, bias);
}

// --- decode: one token ---------------------------------------------------------
//
// Rows are read once, front to back, so memory bandwidth is the limit and the
// kernel has to stay well ahead of it, or the two cores never keep enough
// reads in flight. Q4_0 goes sixteen blocks (288 bytes) at a time: five plain
// loads, then 16-bit word permutes pick out the sixteen scales and four
// groups of four blocks' quants (Q4_0's quants start at an even byte, so
// words suffice: AVX512BW, no VBMI), each group one 512-bit VPDPBUSD pair
// against activations in group order (gemm.h). Q8_0 takes one block per
// 256-bit VPDPBUSD, its scales from sixteen 16-bit loads. Either way the offset correction
// sum_b scale_b * corr_b is one FMA per sixteen blocks, not one per block.

// Software prefetch distance on the decode route. The hardware prefetchers
// alone left Q4_0 at ~28 GB/s here; 1 KiB ahead reached ~30 (512: 28, 2048:
// noisy), Q8_0 is at the bandwidth limit either way. Prefetches past the
// last row are harmless hints.
constexpr int kPrefetchBytes = 1024;
constexpr int kQ4Group = 4;  // Q4_0 blocks per 512-bit VPDPBUSD (gemm.h's group order)

// Word indices into a pair of 512-bit registers (64 words) holding 16 Q4_0
// blocks' bytes from word `base`: block b starts at word 9b (its scale), its
// 16 quant bytes are words 9b+1 .. 9b+8.
struct Q4Perms {
  alignas(64) int16_t scales_lo[32], scales_hi[32], scales_last[32];
  alignas(64) int16_t quants[4][32];
  constexpr Q4Perms() : scales_lo(), scales_hi(), scales_last(), quants() {
    for (int b = 0; b < 8; ++b) scales_lo[b] = static_cast<int16_t>(9 * b);            // r0:r1
    for (int b = 8; b < 15; ++b) scales_hi[b] = static_cast<int16_t>(9 * b - 64);      // r2:r3
    scales_last[15] = static_cast<int16_t>(9 * 15 - 128);                              // r4
    for (int g = 0; g < 4; ++g)                                                        // r_g:r_g+1
      for (int j = 0; j < 4; ++j)
        for (int i = 0; i < 8; ++i) quants[g][8 * j + i] = static_cast<int16_t>(9 * (4 * g + j) + 1 + i - 32 * g);
  }
};
constexpr Q4Perms kQ4Perms;

inline __m512i load_perm(const int16_t* idx) { return _mm512_load_si512(idx); }

template <DType T>
inline __m256i gemv_quants(const uint8_t* blk) {
  if (T == DType::Q4_0) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
    const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
    return _mm256_and_si256(both, _mm256_set1_epi8(15));
  }
  return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2)),
                          _mm256_set1_epi8(static_cast<char>(0x80)));
}

template <DType T>
inline __m256 gemv_block(const uint8_t* blk, const int8_t* xq, const float* p, __m256 acc) {
  const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), gemv_quants<T>(blk),
                                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq)));
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(*p), acc);
}

inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Blocks b .. x.nb - 1 one at a time in element order, into acc; their
// offset corrections go into *tail.
template <DType T>
inline __m256 gemv_singles(const uint8_t* w, const QActs& x, int64_t b, float* tail, __m256 acc) {
  constexpr int kBB = T == DType::Q4_0 ? 18 : 34;
  for (; b < x.nb; ++b) {
    uint16_t h;
    std::memcpy(&h, w + b * kBB, 2);
    const float pb = _cvtsh_ss(h) * x.d[b];
    *tail += pb * static_cast<float>(x.corr[b]);
    acc = gemv_block<T>(w + b * kBB, x.q + b * 32, &pb, acc);
  }
  return acc;
}

// Four Q4_0 blocks' quants side by side (v: 16 bytes each) against their
// group-ordered activations: low nibbles, then high nibbles, one VPDPBUSD
// each. p holds each block's scale in its four lanes.
inline __m512 gemv_group_q4(__m512i v, const int8_t* xq, __m512 p, __m512 acc) {
  const __m512i low4 = _mm512_set1_epi8(15);
  __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(v, low4), _mm512_loadu_si512(xq));
  s = _mm512_dpbusd_epi32(s, _mm512_and_si512(_mm512_srli_epi16(v, 4), low4), _mm512_loadu_si512(xq + 64));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), p, acc);
}

// Lanes of four consecutive blocks' scales, each repeated four times.
inline __m512i quad_lanes(int first) {
  return _mm512_add_epi32(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3), _mm512_set1_epi32(first));
}

float gemv_row_q4(const uint8_t* w, const QActs& x) {
  constexpr int kBB = 18;
  const __m512i s_lo = load_perm(kQ4Perms.scales_lo), s_hi = load_perm(kQ4Perms.scales_hi);
  const __m512i s_last = load_perm(kQ4Perms.scales_last);
  const __m512i q0 = load_perm(kQ4Perms.quants[0]), q1 = load_perm(kQ4Perms.quants[1]);
  const __m512i q2 = load_perm(kQ4Perms.quants[2]), q3 = load_perm(kQ4Perms.quants[3]);
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, corr = a0;
  int64_t b = 0;
  for (; b + 16 <= x.nb; b += 16) {
    const uint8_t* g = w + b * kBB;
    for (int l = 0; l < 16 * kBB; l += 64)
      _mm_prefetch(reinterpret_cast<const char*>(g + kPrefetchBytes + l), _MM_HINT_T0);
    const __m512i r0 = _mm512_loadu_si512(g), r1 = _mm512_loadu_si512(g + 64);
    const __m512i r2 = _mm512_loadu_si512(g + 128), r3 = _mm512_loadu_si512(g + 192);
    const __m512i r4 = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + 256)));
    __m512i sc = _mm512_permutex2var_epi16(r0, s_lo, r1);
    sc = _mm512_mask_blend_epi16(0x7F00, sc, _mm512_permutex2var_epi16(r2, s_hi, r3));
    sc = _mm512_mask_blend_epi16(0x8000, sc, _mm512_permutexvar_epi16(s_last, r4));
    const __m512 pv = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(sc)), _mm512_loadu_ps(x.d + b));
    corr = _mm512_fmadd_ps(pv, _mm512_cvtepi32_ps(_mm512_loadu_si512(x.corr + b)), corr);
    const int8_t* xq = x.q + b * 32;
    a0 = gemv_group_q4(_mm512_permutex2var_epi16(r0, q0, r1), xq, _mm512_permutexvar_ps(quad_lanes(0), pv), a0);
    a1 = gemv_group_q4(_mm512_permutex2var_epi16(r1, q1, r2), xq + 128, _mm512_permutexvar_ps(quad_lanes(4), pv), a1);
    a2 = gemv_group_q4(_mm512_permutex2var_epi16(r2, q2, r3), xq + 256, _mm512_permutexvar_ps(quad_lanes(8), pv), a2);
    a3 = gemv_group_q4(_mm512_permutex2var_epi16(r3, q3, r4), xq + 384, _mm512_permutexvar_ps(quad_lanes(12), pv), a3);
  }
  // The rest: whole groups of four (scales one at a time), then single blocks
  // in element order.
  float tail = 0;
  const int64_t grouped = x.nb / kQ4Group * kQ4Group;
  for (; b < grouped; b += kQ4Group) {
    alignas(64) float p[16];
    __m512i v = _mm512_setzero_si512();
    for (int j = 0; j < kQ4Group; ++j) {
      const uint8_t* blk = w + (b + j) * kBB;
      uint16_t h;
      std::memcpy(&h, blk, 2);
      const float pb = _cvtsh_ss(h) * x.d[b + j];
      tail += pb * static_cast<float>(x.corr[b + j]);
      for (int l = 0; l < 4; ++l) p[4 * j + l] = pb;
      v = _mm512_mask_loadu_epi64(v, static_cast<__mmask8>(3u << (2 * j)), blk + 2 - 16 * j);
    }
    a0 = gemv_group_q4(v, x.q + b * 32, _mm512_load_ps(p), a0);
  }
  const __m256 single = gemv_singles<DType::Q4_0>(w, x, b, &tail, _mm256_setzero_ps());
  const __m512 acc = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
  return _mm512_reduce_add_ps(acc) + _mm512_reduce_add_ps(corr) + hsum256(single) + tail;
}

// Sixteen Q8_0 blocks' fp16 scales (34 bytes apart) as floats, from 16-bit
// loads rather than a gather (see q4 above).
inline __m512 q8_scales16(const uint8_t* g) {
  constexpr int kBB = 34;
  uint16_t h[16];
  for (int j = 0; j < 16; ++j) std::memcpy(&h[j], g + j * kBB, 2);
  __m128i lo = _mm_cvtsi32_si128(h[0]), hi = _mm_cvtsi32_si128(h[8]);
  lo = _mm_insert_epi16(lo, h[1], 1), hi = _mm_insert_epi16(hi, h[9], 1);
  lo = _mm_insert_epi16(lo, h[2], 2), hi = _mm_insert_epi16(hi, h[10], 2);
  lo = _mm_insert_epi16(lo, h[3], 3), hi = _mm_insert_epi16(hi, h[11], 3);
  lo = _mm_insert_epi16(lo, h[4], 4), hi = _mm_insert_epi16(hi, h[12], 4);
  lo = _mm_insert_epi16(lo, h[5], 5), hi = _mm_insert_epi16(hi, h[13], 5);
  lo = _mm_insert_epi16(lo, h[6], 6), hi = _mm_insert_epi16(hi, h[14], 6);
  lo = _mm_insert_epi16(lo, h[7], 7), hi = _mm_insert_epi16(hi, h[15], 7);
  return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1));
}

float gemv_row_q8(const uint8_t* w, const QActs& x) {
  constexpr int kBB = 34;  // block bytes
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  __m512 corr = _mm512_setzero_ps();
  alignas(64) float p[16];
  int64_t b = 0;
  for (; b + 16 <= x.nb; b += 16) {
    const uint8_t* g = w + b * kBB;
    for (int l = 0; l < 16 * kBB; l += 64)
      _mm_prefetch(reinterpret_cast<const char*>(g + kPrefetchBytes + l), _MM_HINT_T0);
    const __m512 pv = _mm512_mul_ps(q8_scales16(g), _mm512_loadu_ps(x.d + b));
    corr = _mm512_fmadd_ps(pv, _mm512_cvtepi32_ps(_mm512_loadu_si512(x.corr + b)), corr);
    const int8_t* xq = x.q + b * 32;
    _mm512_store_ps(p, pv);
    for (int j = 0; j < 16; j += 4) {
      a0 = gemv_block<DType::Q8_0>(g + j * kBB, xq + j * 32, p + j, a0);
      a1 = gemv_block<DType::Q8_0>(g + (j + 1) * kBB, xq + (j + 1) * 32, p + j + 1, a1);
      a2 = gemv_block<DType::Q8_0>(g + (j + 2) * kBB, xq + (j + 2) * 32, p + j + 2, a2);
      a3 = gemv_block<DType::Q8_0>(g + (j + 3) * kBB, xq + (j + 3) * 32, p + j + 3, a3);
    }
  }
  float tail = 0;
  a0 = gemv_singles<DType::Q8_0>(w, x, b, &tail, a0);
  return hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3))) + _mm512_reduce_add_ps(corr) + tail;
}

void int_gemv(DType t, const uint8_t* w, size_t wrow, int64_t nrows, const QActs& x, float* y, const float* bias) {
  for (int64_t r = 0; r < nrows; ++r) {
    const float v = t == DType::Q4_0 ? gemv_row_q4(w + r * wrow, x) : gemv_row_q8(w + r * wrow, x);
    y[r] = v + (bias ? bias[r] : 0.0f);
  }
}

// --- float weights -------------------------------------------------------------
//
// A chunk of up to 64 rows is converted to f32 one K block (256 columns) at a
// time into buf as two 32-row sub-panels laid out [k][32], 64 KiB in all, so
// it stays in L2 while every token streams past it. The register tile is 8
// tokens x 32 rows: per column, two vector loads of weights, 8 broadcasts and
// 16 FMAs.

constexpr int kChunkRows = 64;
constexpr int kKBlock = 256;
constexpr int kSub = 32;  // rows per sub-panel (two vectors)
constexpr int kFTile = 8;

size_t float_chunk_bytes() { return sizeof(float) * kChunkRows * kKBlock; }

inline __mmask16 lane_mask(int n) { return n >= 16 ? 0xFFFF : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1); }


template <int NT>
void float_tile(const float* p, int kc, const float* x, int64_t ldx, float* y, int64_t ldy, __mmask16 m0,
                __mmask16 m1, bool first, const float* bias) {
  __m512 a0[NT], a1[NT];
  #pragma GCC unroll 8
  for (int t = 0; t < NT; ++t) {
    if (first) {
      a0[t] = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
      a1[t] = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
    } else {
      a0[t] = _mm512_maskz_loadu_ps(m0, y + t * ldy);
      a1[t] = _mm512_maskz_loadu_ps(m1, y + t * ldy + 16);
    }
  }
  for (int k = 0; k < kc; ++k) {
    const __m512 w0 = _mm512_load_ps(p + k * kSub), w1 = _mm512_load_ps(p + k * kSub + 16);
#pragma GCC unroll 8
    for (int t = 0; t < NT; ++t) {
      const __m512 xb = _mm512_set1_ps(x[t * ldx + k]);
      a0[t] = _mm512_fmadd_ps(w0, xb, a0[t]);
      a1[t] = _mm512_fmadd_ps(w1, xb, a1[t]);
    }
  }
  #pragma GCC unroll 8
  for (int t = 0; t < NT; ++t) {
    _mm512_mask_storeu_ps(y + t * ldy, m0, a0[t]);
    _mm512_mask_storeu_ps(y + t * ldy + 16, m1, a1[t]);
  }
}

void float_chunk(DType t, const uint8_t* w, size_t wrow, int nr, int64_t cols, const float* x, int64_t ldx,
                 int64_t n, float* y, int64_t ldy, const float* bias, float* buf) {
  float_chunk_loop<kSub, kKBlock, kFTile>(
      t, w, wrow, nr, cols, x, ldx, n, y, ldy, bias, buf,
      [&](int nt, const float* p, int kc, const float* xs, float* ys, int left, bool first, const float* bs) {
        const __mmask16 m0 = lane_mask(left), m1 = lane_mask(left - 16);
        switch (nt) {
          case 8: float_tile<8>(p, kc, xs, ldx, ys, ldy, m0, m1, first, bs); break;
          case 7: float_tile<7>(p, kc, xs, ldx, ys, ldy, m0, m1, first, bs); break;
          case 6: float_tile<6>(p, kc, xs, ldx, ys, ldy, m0, m1, first, bs); break;
          case 5: float_tile<5>(p, kc, xs, ldx, ys, ldy, m0, m1, first, bs); break;
          case 4: float_tile<4>(p, kc, xs, ldx, ys, ldy, m0, m1, first, bs); break;
          case 3: float_tile<3>(p, kc, xs, ldx, ys, ldy, m0, m1, first, bs); break;
          case 2: float_tile<2>(p, kc, xs, ldx, ys, ldy, m0, m1, first, bs); break;
          default: float_tile<1>(p, kc, xs, ldx, ys, ldy, m0, m1, first, bs); break;
        }
      });
}

// Q8_0 x8 decode with this set's offset (128, so VPDPBUSD's unsigned operand
// is the quant with its sign bit flipped), on 256-bit vectors like the AVX2
// kernels; Q4_0 takes the AVX2 kernel itself.
void q8x8_gemv(const uint8_t* w, int64_t groups, const QActs& x, float* y, const float* bias) {
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  x8_gemv_loop<DType::Q8_0, kPrefetchBytes>(w, groups, x, y, bias, [&](const uint8_t* p, const int8_t* xq, int64_t b) {
    __m256i s = _mm256_set1_epi32(x.corr[b]);
    for (int c = 0; c < 8; ++c) s = _mm256_dpbusd_epi32(s, _mm256_xor_si256(x8_chunk(p, c), flip), x8_quad(xq, c));
    return s;
  });
}

void x8_gemv(DType t, const uint8_t* w, int64_t groups, const QActs& x, float* y, const float* bias) {
  if (t == DType::Q4_0) q4x8_gemv_avx2(w, groups, x, y, bias);
  else q8x8_gemv(w, groups, x, y, bias);
}

}  // namespace

void install_avx512_matmul(CpuKernels& k, unsigned parts) {
  constexpr PanelKernels panels = {kRows,      int_offset, int_panel_bytes,   int_panel, x8_panel,
                                   kChunkRows, kKBlock,    float_chunk_bytes, float_chunk};
  constexpr GemvKernels gemv = {int_offset, int_gemv, kQ4Group, x8_gemv, q4x8_gemv_n_avx2, kX8GemvTokens};
  if (parts & kPanels) k.panels = panels;
  if (parts & kDecode) k.gemv = gemv;
}

}  // namespace detail
}  // namespace cxr

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

#endif  // x86-64
