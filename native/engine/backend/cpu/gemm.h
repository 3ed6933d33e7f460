// gemm.h - the data layouts shared by matmul.cpp and the blocked matmul
// kernels, whose slots sit in the kernel table (cpu_kernels.h).
//
// matmul.cpp decides how a matmul is cut up (threads, panels of weight rows)
// and prepares the activations once; a kernel set for one instruction set
// (x86/gemm_avx2.cpp, x86/gemm_avx512.cpp) packs a panel of weight rows into a
// SIMD-friendly layout in a small per-thread buffer and runs every token
// against it while it is hot in cache. Weights stay views into the mmapped
// file, except Q4_0 and Q8_0 matrices, which the CPU backend rewrites at load
// time into the x8 layout (repack.h) that the x8 kernels below read.
//
// Two families:
//   Integer: Q4_0 / Q8_0 weights against Q8_0 activations. A panel holds, per
//   32-element block, the weights of `panel_rows` rows interleaved four bytes
//   at a time (lane i of a vector = row i), so one byte-dot instruction
//   advances every row of the panel at once and the per-block scale is applied
//   once per block and token, not per product.
//   Float: F32 / F16 / BF16 weights against f32 activations: the classic
//   outer-product kernel on a cache-blocked panel of weights converted to f32.
#pragma once
#include <cstddef>
#include <cstdint>

#include "types/dtype.h"
#include "backend/cpu/cpu_kernels.h"
#include "types/quants.h"

namespace cxr {
namespace detail {

// Q8_0 activations rearranged block-major for the integer kernels, once per
// matmul: block b of token t has its 32 quants at q + (b * n + t) * 32, so the
// tokens of a tile sit side by side, and its scale (as a float) and
// -offset * (sum of its quants) at d[b * n + t] and corr[b * n + t]. The
// kernels take weights as unsigned bytes q + offset (offset 8 for Q4_0's raw
// nibbles, 128 for Q8_0 with the sign bit flipped, 0 where a kernel keeps
// Q8_0 signed); corr restores the signed dot.
struct QActs {
  const int8_t* q;       // [nb, n, 32] quants
  const float* d;        // [nb, n] block scales
  const int32_t* corr;   // [nb, n] -offset * sum of the block's quants
  int64_t n;             // tokens
  int64_t nb;            // blocks per row
};

// Both kernel sets' float packing: converts columns [k0, k0 + kc) of weight
// rows [0, nr) (F32, F16 or BF16; rows wrow bytes apart) to f32 and lays them
// out as sub-panels of kSub rows, [k][kSub] each, rows past nr zero. The
// conversion is the kernel table's, so it is as fast as the CPU allows.
template <int kSub, int kMaxCols>
void pack_float_panel(DType t, const uint8_t* w, size_t wrow, int nr, int64_t k0, int kc, float* buf) {
  const TypeTraits& tt = cpu_kernels().type(t);
  const size_t skip = dtype_row_bytes(t, k0);  // float types: one element per block
  float tmp[kMaxCols];
  for (int r = 0; r < (nr + kSub - 1) / kSub * kSub; ++r) {
    float* dst = buf + (r / kSub) * kc * kSub + r % kSub;
    if (r < nr) tt.to_float(w + r * wrow + skip, tmp, kc);
    for (int k = 0; k < kc; ++k) dst[k * kSub] = r < nr ? tmp[k] : 0.0f;
  }
}

#if defined(__x86_64__) || defined(_M_X64)
// The AVX2 set's Q4_0 x8 decode kernels (gemm_avx2.cpp), which the AVX-512
// set shares (both take Q4_0 with offset 8): with the rows in lanes, 256-bit
// vectors already keep the core ahead of memory. Valid only on CPUs with
// AVX2, FMA and F16C.
void q4x8_gemv_avx2(const uint8_t* w, int64_t groups, const QActs& x, float* y, const float* bias);
// The same for nt <= kX8GemvTokens tokens at once (the q4_x8_gemv_n slot).
constexpr int kX8GemvTokens = 4;
static_assert(kX8GemvTokens <= kMaxX8GemvTokens, "matmul.cpp's arrays hold kMaxX8GemvTokens tokens");
void q4x8_gemv_n_avx2(const uint8_t* w, int64_t groups, const QActs* x, int nt, float* const* y, const float* bias);
#endif

}  // namespace detail
}  // namespace cxr
