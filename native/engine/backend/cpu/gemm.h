// gemm.h - the seam between matmul.cpp and the blocked matmul kernels.
//
// matmul.cpp decides how a matmul is cut up (threads, panels of weight rows)
// and prepares the activations once; a kernel set for one instruction set
// (gemm_avx2.cpp, gemm_avx512.cpp) packs a panel of weight rows into a
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
#include "backend/cpu/dispatch.h"
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

struct GemmKernels {
  const char* name;
  int panel_rows;  // weight rows per integer panel

  // Weight offset the integer kernel for `t` (Q4_0 or Q8_0) expects; see QActs.
  int (*int_offset)(DType t);
  // Bytes of the per-thread buffer that int_panel needs for `cols` columns.
  size_t (*int_panel_bytes)(int64_t cols);
  // Packs weight rows [0, nr) (nr <= panel_rows; w points at the first row,
  // rows are wrow bytes apart) into buf and computes y[t * ldy + r] for every
  // token t < x.n and row r < nr, adding bias[r] if bias is given.
  void (*int_panel)(DType t, const uint8_t* w, size_t wrow, int nr, const QActs& x, float* y, int64_t ldy,
                    const float* bias, uint8_t* buf);

  // Decode: y[r] = row r · x (+ bias[r]) for rows r < nrows of one token, x a
  // single-token QActs (n == 1). Streams each row once, in order. For Q4_0
  // weights x.q is in group order, G = q4_gemv_group blocks to a group: the
  // 32·G bytes of blocks Gj .. Gj+G-1 hold elements 0..15 of each block in
  // turn, then elements 16..31 of each, which matches the nibbles of G weight
  // blocks loaded side by side (blocks past the last whole group stay in
  // element order).
  void (*int_gemv)(DType t, const uint8_t* w, size_t wrow, int64_t nrows, const QActs& x, float* y,
                   const float* bias);
  int q4_gemv_group;

  // x8 weights (repack.h: Q4_0 or Q8_0 rows interleaved eight at a time),
  // against activations in plain block order with this set's int_offset.
  // Decode: y[8g + r] (+ bias) for the first `groups` row groups at w, one
  // token (x.n == 1).
  void (*x8_gemv)(DType t, const uint8_t* w, int64_t groups, const QActs& x, float* y, const float* bias);
  // Panels: as int_panel, for nr rows (a multiple of 8, <= panel_rows) whose
  // groups start at w.
  void (*x8_panel)(DType t, const uint8_t* w, int nr, const QActs& x, float* y, int64_t ldy, const float* bias,
                   uint8_t* buf);

  // Float family: rows per packed column chunk and columns per K block.
  int float_chunk_rows;
  int float_k_block;
  // Bytes of the per-thread buffer float_chunk needs.
  size_t (*float_chunk_bytes)();
  // y[t * ldy + r] = sum_k x[t * ldx + k] * W[r, k] (+ bias[r]) for rows r < nr
  // (nr <= float_chunk_rows; w points at the first row, wrow bytes apart) and
  // every token t < n. W is F32, F16 or BF16.
  void (*float_chunk)(DType t, const uint8_t* w, size_t wrow, int nr, int64_t cols, const float* x, int64_t ldx,
                      int64_t n, float* y, int64_t ldy, const float* bias, float* buf);
};

// Both kernel sets' float packing: converts columns [k0, k0 + kc) of weight
// rows [0, nr) (F32, F16 or BF16; rows wrow bytes apart) to f32 and lays them
// out as sub-panels of kSub rows, [k][kSub] each, rows past nr zero. The
// conversion is the traits table's, so it is as fast as the CPU allows.
template <int kSub, int kMaxCols>
void pack_float_panel(DType t, const uint8_t* w, size_t wrow, int nr, int64_t k0, int kc, float* buf) {
  const TypeTraits& tt = type_traits(t);
  const size_t skip = dtype_row_bytes(t, k0);  // float types: one element per block
  float tmp[kMaxCols];
  for (int r = 0; r < (nr + kSub - 1) / kSub * kSub; ++r) {
    float* dst = buf + (r / kSub) * kc * kSub + r % kSub;
    if (r < nr) tt.to_float(w + r * wrow + skip, tmp, kc);
    for (int k = 0; k < kc; ++k) dst[k * kSub] = r < nr ? tmp[k] : 0.0f;
  }
}

// The best kernel set for the running CPU, or nullptr when there is none (no
// AVX2) or the scalar kernels are forced.
const GemmKernels* gemm_kernels();
// The set whose int_gemv / x8_gemv (and group order) the decode route uses: the same as
// gemm_kernels(), except on CPUs where another set decodes faster (AMD cores
// with AVX-512 take the AVX2 one; see matmul.cpp). nullptr exactly when
// gemm_kernels() is.
const GemmKernels* gemv_kernels();

// For tests: with on = true, gemm_kernels() and gemv_kernels() return k
// (nullptr: none) instead of their own choice, unless the scalar kernels are
// forced; on = false undoes it. Not thread-safe, like force_scalar_kernels().
void override_gemm_kernels(const GemmKernels* k, bool on);

#if defined(__x86_64__) || defined(_M_X64)
// Defined in gemm_avx2.cpp and gemm_avx512.cpp; valid only on CPUs that have
// the instruction sets named there.
const GemmKernels* gemm_kernels_avx2();
const GemmKernels* gemm_kernels_avx512();
// The AVX2 set's Q4_0 x8 decode kernel, which the AVX-512 set shares (both
// take Q4_0 with offset 8): with the rows in lanes, 256-bit vectors already
// keep the core ahead of memory.
void q4x8_gemv_avx2(const uint8_t* w, int64_t groups, const QActs& x, float* y, const float* bias);
// The same for nt <= kX8GemvTokens tokens at once (x[t], y[t]): each block's
// nibbles are unpacked once for all of them, and every token's result is bit
// for bit what q4x8_gemv_avx2 gives it alone.
constexpr int kX8GemvTokens = 4;
void q4x8_gemv_n_avx2(const uint8_t* w, int64_t groups, const QActs* x, int nt, float* const* y, const float* bias);
#endif

}  // namespace detail
}  // namespace cxr
