// quant_math.h - the arithmetic of the CUDA matmul kernels for every weight
// type, as functions of one block: dequantizing it, and its dot product with a
// block of quantized activations in int8 (dp4a) math.
//
// The kernels call exactly these functions, and the host tests compare them
// with the CPU reference kernels (quants.cpp), so a first run on a GPU should
// only find launch and synchronisation bugs, not arithmetic ones.
//
// Activations are quantized per 32 elements into block_a8 (an fp32 scale,
// unlike Q8_0's fp16, and the sum of the quants so the offsets of Q4_0/Q4_K/
// Q6_K cost one multiply per block). Every weight type is dotted 32 elements at
// a time against one block_a8: a Q4_K or Q6_K super-block is 8 such pieces.
#pragma once
#include <cstdint>

#include "backend/cuda/hd.h"
#include "types/quant_blocks.h"

namespace cxr {
namespace cuda {

constexpr int kA8 = 32;  // elements per activation block

struct block_a8 {
  float d;          // scale: x ≈ q * d
  int32_t sum;      // Σ qs, for the weight types with an offset
  int8_t qs[kA8];   // quants, element order (4-byte aligned: loaded as int32 words)
};
static_assert(sizeof(block_a8) == 40, "block_a8 is 40 bytes");

// Quantizes 32 floats symmetrically (amax -> 127), rounding half away from
// zero: the same quants the CPU's Q8_0 activations get, with the scale kept in fp32.
CXR_HD void quantize_a8(const float* x, block_a8* out) {
  float amax = 0.0f;
  for (int j = 0; j < kA8; ++j) {
    const float a = x[j] < 0 ? -x[j] : x[j];
    amax = a > amax ? a : amax;
  }
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  int32_t sum = 0;
  for (int j = 0; j < kA8; ++j) {
    const float v = x[j] * id;
    const int q = static_cast<int>(v < 0 ? v - 0.5f : v + 0.5f);  // |v| <= 127: no overflow
    out->qs[j] = static_cast<int8_t>(q);
    sum += q;
  }
  out->d = d;
  out->sum = sum;
}

CXR_HD int32_t a8_word(const block_a8& a, int w) { return load_i32_a2(a.qs + 4 * w); }

// --- dequantizing: element e of a block --------------------------------------

CXR_HD float dequant_q8_0(const block_q8_0& b, int e) { return b.qs[e] * half_to_float(b.d); }

CXR_HD float dequant_q4_0(const block_q4_0& b, int e) {
  const int q = e < 16 ? (b.qs[e] & 15) : (b.qs[e - 16] >> 4);
  return (q - 8) * half_to_float(b.d);
}

// Scale and min of Q4_K sub-block j (0..7), unpacked from the 12 packed bytes.
CXR_HD void q4_K_scale_min(const uint8_t* s, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

CXR_HD float dequant_q4_K(const block_q4_K& b, int e) {
  const int j = e / 32, c = e / 64, l = e % 32;
  int sc, m;
  q4_K_scale_min(b.scales, j, &sc, &m);
  const int q = (b.qs[32 * c + l] >> (4 * (j & 1))) & 15;
  return half_to_float(b.d) * sc * q - half_to_float(b.dmin) * m;
}

// The 6-bit quant (0..63) of element e of a Q6_K block.
CXR_HD int q6_K_quant(const block_q6_K& b, int e) {
  const int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
  const int lo = b.ql[64 * h + l + (k & 1) * 32];
  const int low4 = k < 2 ? (lo & 15) : (lo >> 4);
  return low4 | (((b.qh[32 * h + l] >> (2 * k)) & 3) << 4);
}

CXR_HD float dequant_q6_K(const block_q6_K& b, int e) {
  return half_to_float(b.d) * b.scales[e / 16] * (q6_K_quant(b, e) - 32);
}

// --- dot products: 32 weights · one block_a8 ----------------------------------

CXR_HD float dot_q8_0_a8(const block_q8_0& w, const block_a8& a) {
  int32_t s = 0;
  for (int i = 0; i < 8; ++i) s = dp4a(load_i32_a2(w.qs + 4 * i), a8_word(a, i), s);
  return static_cast<float>(s) * (half_to_float(w.d) * a.d);
}

// Σ (q - 8)·a = Σ q·a - 8·Σ a: the nibbles go into dp4a as they are.
CXR_HD float dot_q4_0_a8(const block_q4_0& w, const block_a8& a) {
  int32_t s = 0;
  for (int i = 0; i < 4; ++i) {
    const int32_t q = load_i32_a2(w.qs + 4 * i);
    s = dp4a(q & 0x0f0f0f0f, a8_word(a, i), s);
    s = dp4a((q >> 4) & 0x0f0f0f0f, a8_word(a, i + 4), s);
  }
  return static_cast<float>(s - 8 * a.sum) * (half_to_float(w.d) * a.d);
}

// Sub-block j (elements 32j .. 32j+32) of a Q4_K block: d·sc·Σ q·a - dmin·m·Σ a.
CXR_HD float dot_q4_K_a8(const block_q4_K& w, int j, const block_a8& a) {
  int sc, m;
  q4_K_scale_min(w.scales, j, &sc, &m);
  const uint8_t* q = w.qs + 32 * (j / 2);
  const int shift = 4 * (j & 1);
  int32_t s = 0;
  for (int i = 0; i < 8; ++i) s = dp4a((load_i32_a2(q + 4 * i) >> shift) & 0x0f0f0f0f, a8_word(a, i), s);
  return a.d * (half_to_float(w.d) * sc * static_cast<float>(s) - half_to_float(w.dmin) * m * static_cast<float>(a.sum));
}

// Sub-block j (elements 32j .. 32j+32, two 16-element scales) of a Q6_K block.
// Σ (q - 32)·a per 16 elements, with the Σ a of each half from dp4a against ones.
CXR_HD float dot_q6_K_a8(const block_q6_K& w, int j, const block_a8& a) {
  const int h = j / 4, k = j % 4;
  const uint8_t* L = w.ql + 64 * h + (k & 1) * 32;
  const uint8_t* H = w.qh + 32 * h;
  const int lshift = k < 2 ? 0 : 4, hshift = 2 * k;
  int32_t dot[2] = {0, 0}, asum[2] = {0, 0};
  for (int i = 0; i < 8; ++i) {
    const int32_t lo = (load_i32_a2(L + 4 * i) >> lshift) & 0x0f0f0f0f;
    const int32_t hi = ((load_i32_a2(H + 4 * i) >> hshift) & 0x03030303) << 4;
    const int32_t av = a8_word(a, i);
    dot[i / 4] = dp4a(lo | hi, av, dot[i / 4]);
    asum[i / 4] = dp4a(0x01010101, av, asum[i / 4]);
  }
  const int32_t s = w.scales[2 * j] * (dot[0] - 32 * asum[0]) + w.scales[2 * j + 1] * (dot[1] - 32 * asum[1]);
  return half_to_float(w.d) * a.d * static_cast<float>(s);
}

// --- int8 unpacking for the tensor-core path ----------------------------------
// Q8_0 and Q4_0 weights go into the int8 mma as signed bytes with one scale per
// 32: four quants of word i (elements 4i .. 4i+4) of a block.

CXR_HD int32_t q8_0_word(const block_q8_0& w, int i) { return load_i32_a2(w.qs + 4 * i); }

// (q - 8) per byte, exact in int8: the nibble minus 8 in each byte lane. Word
// i < 4 holds elements 4i.., word i >= 4 elements 16 + 4(i-4).. (the high nibbles).
CXR_HD int32_t q4_0_word(const block_q4_0& w, int i) {
  const int32_t q = load_i32_a2(w.qs + 4 * (i & 3));
  const uint32_t n = static_cast<uint32_t>(i < 4 ? q : q >> 4) & 0x0f0f0f0fu;
  // Per byte: (n | 0x80) - 8 cannot borrow from its neighbour, and flipping
  // the top bit back leaves the two's-complement byte n - 8.
  return static_cast<int32_t>(((n | 0x80808080u) - 0x08080808u) ^ 0x80808080u);
}

}  // namespace cuda
}  // namespace cxr
