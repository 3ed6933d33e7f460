// repack.h - Q4_0 weights interleaved eight rows at a time, for decoding.
//
// A Q4_0 row is a run of 18-byte blocks (quant_blocks.h). Decoding reads
// every row once per token, and with rows side by side in the file the kernel
// spends most of its work gathering per-row scales and reducing per-row sums:
// on a 2-core Zen 4 it topped out near 31 GB/s of weights with everything in
// cache, below the ~60 GB/s the memory can deliver on a quiet day. Rows
// interleaved eight at a time put one row in each 32-bit lane of a 256-bit
// vector, so one activation broadcast feeds eight rows, the eight scales come
// in one load, and the sums never leave their lanes: ~80 GB/s in cache.
//
// Layout ("q4_0x8"), same size as the rows it replaces. Row group g holds rows
// 8g .. 8g+7; block b of group g is 144 bytes at (g * nb + b) * 144 (nb =
// blocks per row):
//
//   bytes   0 ..  15   d[r]: row 8g+r's block scale (fp16), r = 0..7
//   bytes  16 .. 143   four 32-byte chunks; chunk c (c = 0..3) holds, at
//                      bytes 4r .. 4r+3, row 8g+r's qs[4c .. 4c+3]: low
//                      nibbles are elements 4c .. 4c+3 of the block, high
//                      nibbles elements 16+4c .. 16+4c+3 (Q4_0's own split)
//
// Only CPU matmul weights whose row count is a multiple of 8 are repacked
// (backend_cpu.cpp); get_rows never sees this layout.
#pragma once
#include <cstddef>
#include <cstdint>

namespace cxr {

class ThreadPool;

constexpr int kQ4x8Rows = 8;              // rows per group
constexpr size_t kQ4x8BlockBytes = 144;  // one block of a group: 8 scales + 4 chunks

// Rewrites `rows` Q4_0 rows of `cols` elements (rows % 8 == 0, cols % 32 == 0)
// from src (row after row) into dst in the q4_0x8 layout. Same byte count.
void repack_q4_0_x8(ThreadPool& pool, const uint8_t* src, int64_t rows, int64_t cols, uint8_t* dst);

// The inverse for one group: its 8 rows back in Q4_0 row form, row r at
// dst + r * row_bytes (row_bytes = cols / 32 * 18). For code paths without a
// q4_0x8 kernel (the scalar fallback).
void unpack_q4_0_x8_group(const uint8_t* group, int64_t cols, uint8_t* dst);

}  // namespace cxr
