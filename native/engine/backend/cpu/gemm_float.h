// gemm_float.h - the float family's chunk loop (cpu_kernels.h's
// panels.float_chunk), shared by the AVX2 and AVX-512 kernel sets, which
// differ only in their register tile.
//
// Include it inside a file's target region (after <immintrin.h>, within the
// target pragma), like gemm_x8.h, and after gemm.h, so the loop and the tile
// it calls are compiled, and inlined, for the same instruction set.
#pragma once

namespace cxr {
namespace detail {
namespace {

// float_chunk for a set whose packed sub-panels are kSub rows wide, kKBlock
// columns at a time, with a register tile of up to kFTile tokens: packs each
// K block of the chunk's nr rows once (pack_float_panel), then calls
//   tile(nt, p, kc, xs, ys, left, first, bs)
// for every sub-panel and group of nt tokens: p the packed sub-panel, kc its
// columns, xs / ys the group's activations and outputs (strides ldx / ldy),
// left the chunk's rows from this sub-panel on, first whether this is the
// first K block (the tile starts from bias or zero, not from ys), bs the
// sub-panel's bias or nullptr.
template <int kSub, int kKBlock, int kFTile, typename Tile>
inline void float_chunk_loop(DType t, const uint8_t* w, size_t wrow, int nr, int64_t cols, const float* x,
                             int64_t ldx, int64_t n, float* y, int64_t ldy, const float* bias, float* buf, Tile tile) {
  const int nsub = (nr + kSub - 1) / kSub;
  for (int64_t k0 = 0; k0 < cols; k0 += kKBlock) {
    const int kc = static_cast<int>(cols - k0 < kKBlock ? cols - k0 : kKBlock);
    pack_float_panel<kSub, kKBlock>(t, w, wrow, nr, k0, kc, buf);
    const bool first = k0 == 0;
    for (int64_t t0 = 0; t0 < n; t0 += kFTile) {
      const int nt = static_cast<int>(n - t0 < kFTile ? n - t0 : kFTile);
      for (int s = 0; s < nsub; ++s)
        tile(nt, buf + s * kc * kSub, kc, x + t0 * ldx + k0, y + t0 * ldy + s * kSub, nr - s * kSub, first,
             bias ? bias + s * kSub : nullptr);
    }
  }
}

}  // namespace
}  // namespace detail
}  // namespace cxr
