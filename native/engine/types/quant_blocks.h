// quant_blocks.h - the quantized block layouts, byte-identical to ggml's.
//
// A tensor row of a quantized type is an array of these blocks. Nothing here may
// change: GGUF files written by llama.cpp are read through these structs as-is,
// and ours are read by llama.cpp. Fp16 fields are raw IEEE half bits.
//
// Element order inside each block (the part that is easy to get wrong):
//   Q4_0  byte j holds element j (low nibble) and element j+16 (high nibble).
//   Q4_K  each 64-element chunk c uses qs[32c .. 32c+32): low nibbles are the
//         chunk's first 32 elements (sub-block 2c), high nibbles the next 32
//         (sub-block 2c+1).
//   Q6_K  see block_q6_K below.
#pragma once
#include <cstdint>

namespace cxr {

constexpr int QK4_0 = 32;  // elements per Q4_0 block
constexpr int QK8_0 = 32;  // elements per Q8_0 block
constexpr int QK_K = 256;  // elements per k-quant super-block
constexpr int K_SCALE_SIZE = 12;  // bytes of packed 6-bit scales/mins in Q4_K

// 4-bit, one scale per 32 elements: x = (q - 8) * d.
struct block_q4_0 {
  uint16_t d;             // fp16 scale
  uint8_t qs[QK4_0 / 2];  // nibbles: element j in low half of qs[j], element j+16 in high half
};
static_assert(sizeof(block_q4_0) == 18, "block_q4_0 must be 18 bytes like ggml");

// 8-bit, one scale per 32 elements: x = q * d.
struct block_q8_0 {
  uint16_t d;         // fp16 scale
  int8_t qs[QK8_0];   // quants, element order
};
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 must be 34 bytes like ggml");

// 4-bit k-quant: 8 sub-blocks of 32, each with a 6-bit scale sc and 6-bit min m;
// x = d*sc * q - dmin*m with q in 0..15.
//
// scales[12] packs the 8 (sc, m) pairs. For sub-block j:
//   j < 4:  sc = scales[j] & 63            m = scales[j+4] & 63
//   j >= 4: sc = (scales[j+4] & 15) | ((scales[j-4] >> 6) << 4)
//           m  = (scales[j+4] >> 4) | ((scales[j]   >> 6) << 4)
// i.e. bytes 0..3 hold sc0..3 plus the top two bits of sc4..7, bytes 4..7 hold
// m0..3 plus the top two bits of m4..7, bytes 8..11 hold the low nibbles of
// sc4..7 (low half) and m4..7 (high half).
struct block_q4_K {
  uint16_t d;                     // fp16 super-scale applied to the 6-bit scales
  uint16_t dmin;                  // fp16 super-scale applied to the 6-bit mins
  uint8_t scales[K_SCALE_SIZE];   // packed 6-bit scales and mins, layout above
  uint8_t qs[QK_K / 2];           // nibbles, chunked by 64 elements (see top of file)
};
static_assert(sizeof(block_q4_K) == 144, "block_q4_K must be 144 bytes like ggml");

// 6-bit k-quant: 16 sub-blocks of 16, each with a signed 8-bit scale;
// x = d * scales[e/16] * (q - 32) with q in 0..63 for element e.
//
// Each half (128 elements) h uses ql[64h .. 64h+64) and qh[32h .. 32h+32). For
// l in 0..32, with L = ql + 64h and H = qh + 32h, the 4 low bits and 2 high bits of:
//   element 128h + l      : L[l]    & 15,  H[l]       & 3
//   element 128h + l + 32 : L[l+32] & 15,  H[l] >> 2  & 3
//   element 128h + l + 64 : L[l]    >> 4,  H[l] >> 4  & 3
//   element 128h + l + 96 : L[l+32] >> 4,  H[l] >> 6  & 3
struct block_q6_K {
  uint8_t ql[QK_K / 2];      // low 4 bits of each quant
  uint8_t qh[QK_K / 4];      // high 2 bits of each quant
  int8_t scales[QK_K / 16];  // per-16-element scale, signed
  uint16_t d;                // fp16 super-scale
};
static_assert(sizeof(block_q6_K) == 210, "block_q6_K must be 210 bytes like ggml");

// 8-bit activation format for dotting with Q4_K/Q6_K: x = q * d.
struct block_q8_K {
  float d;                   // fp32 scale (not fp16: activations need the range)
  int8_t qs[QK_K];           // quants, element order
  int16_t bsums[QK_K / 16];  // sum of each 16 consecutive qs, so the Q4_K min term costs 8 mults
};
static_assert(sizeof(block_q8_K) == 292, "block_q8_K must be 292 bytes like ggml");

}  // namespace cxr
