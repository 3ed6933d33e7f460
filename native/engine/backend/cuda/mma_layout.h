// mma_layout.h - which matrix element each lane holds in the tensor-core
// fragments the prefill kernels use (PTX mma.sync), and how a block tile is
// split into warp tiles.
//
// mma.sync.m16n8k16 (f16/bf16 in, f32 out) and m16n8k32 (s8 in, s32 out)
// multiply a 16xK row-major A by a Kx8 column-major B. A lane's group is
// lane / 4 and its index in the group lane % 4; the fragments hold:
//   A f16  a0..a7   row g (+8 for a2,a3,a6,a7)  col 2t + (i&1) (+8 for i >= 4)
//   B f16  b0..b3   row 2t + (i&1) (+8 for i >= 2)  col g
//   A s8   a0..a15  row g (+8 for 4 <= i < 8 and i >= 12)  col 4t + (i&3) (+16 for i >= 8)
//   B s8   b0..b7   row 4t + (i&3) (+16 for i >= 4)  col g
//   C      c0..c3   row g (+8 for c2,c3)  col 2t + (i&1)
// In our matmuls A is the weight tile (rows are output features, K-contiguous
// as in the file) and B the activations (a column per token, K-contiguous), so
// C[feature, token] lands in y[token, feature].
#pragma once
#include "backend/cuda/hd.h"

namespace cxr {
namespace cuda {

struct Coord {
  int row, col;
};

CXR_HD Coord mma_a_f16(int lane, int i) {
  const int g = lane >> 2, t = lane & 3;
  return {g + 8 * ((i >> 1) & 1), 2 * t + (i & 1) + 8 * (i >> 2)};
}
CXR_HD Coord mma_b_f16(int lane, int i) {
  const int g = lane >> 2, t = lane & 3;
  return {2 * t + (i & 1) + 8 * (i >> 1), g};
}
CXR_HD Coord mma_a_s8(int lane, int i) {
  const int g = lane >> 2, t = lane & 3;
  return {g + 8 * ((i >> 2) & 1), 4 * t + (i & 3) + 16 * (i >> 3)};
}
CXR_HD Coord mma_b_s8(int lane, int i) {
  const int g = lane >> 2, t = lane & 3;
  return {4 * t + (i & 3) + 16 * (i >> 2), g};
}
CXR_HD Coord mma_c(int lane, int i) {
  const int g = lane >> 2, t = lane & 3;
  return {g + 8 * (i >> 1), 2 * t + (i & 1)};
}

// Where register r (a 32-bit word) of each fragment is loaded from in shared
// memory: A tiles are row-major (a row per output feature), B tiles
// token-major (a row per token), both K-contiguous; `col` counts 32-bit words.
CXR_HD Coord load_a_s8(int lane, int r) { return {(lane >> 2) + 8 * (r & 1), (lane & 3) + 4 * (r >> 1)}; }
CXR_HD Coord load_b_s8(int lane, int r) { return {lane >> 2, (lane & 3) + 4 * r}; }
CXR_HD Coord load_a_f16(int lane, int r) { return {(lane >> 2) + 8 * (r & 1), (lane & 3) + 4 * (r >> 1)}; }
CXR_HD Coord load_b_f16(int lane, int r) { return {lane >> 2, (lane & 3) + 4 * r}; }

// The block tile of the prefill matmuls: kTileM output features x kTileN
// tokens per thread block, four warps in a 2x2 grid, each warp kWarpM x kWarpN
// made of (kWarpM/16) x (kWarpN/8) mma tiles.
constexpr int kTileM = 64, kTileN = 64, kWarpM = 32, kWarpN = 32, kWarps = 4;
constexpr int kMmaM = kWarpM / 16, kMmaN = kWarpN / 8;

// Where mma tile (mi, nj) of warp `warp` starts inside the block tile.
CXR_HD Coord warp_mma_origin(int warp, int mi, int nj) {
  return {(warp >> 1) * kWarpM + 16 * mi, (warp & 1) * kWarpN + 8 * nj};
}

// Element (feature, token) of the block tile that accumulator c[mi][nj][i] of
// `lane` in `warp` holds: each element of the block tile exactly once.
CXR_HD Coord tile_c(int warp, int lane, int mi, int nj, int i) {
  const Coord o = warp_mma_origin(warp, mi, nj), c = mma_c(lane, i);
  return {o.row + c.row, o.col + c.col};
}

// Shared-memory row strides (bytes) of the tiles. Fragment loads read word t
// of rows g = 0..7; a stride of 36 or 48 words puts those 32 words in 32
// different banks (the test checks it for the strides used).
constexpr int kS8Chunk = 4;                             // quant blocks of 32 per K step
constexpr int kS8Stride = 32 * kS8Chunk + 16;           // 144 bytes = 36 words
constexpr int kF16Chunk = 64;                           // halves per K step
constexpr int kF16Stride = 2 * kF16Chunk + 16;          // 144 bytes = 36 words

CXR_HD int bank_of(int row, int word, int stride_bytes) { return (row * (stride_bytes / 4) + word) % 32; }

}  // namespace cuda
}  // namespace cxr
