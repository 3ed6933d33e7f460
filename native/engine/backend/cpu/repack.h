// repack.h - Q4_0 and Q8_0 weights interleaved eight rows at a time.
//
// A Q4_0 or Q8_0 row is a run of blocks (quant_blocks.h): a 2-byte fp16 scale,
// then the block's quants (Q4_0: 16 bytes of nibbles, Q8_0: 32 int8). Decoding
// reads every row once per token, and with rows side by side as in the file
// the kernel spends most of its work gathering per-row scales and reducing
// per-row sums: on a 2-core Zen 4 the Q4_0 one topped out near 31 GB/s of
// weights with everything in cache, below the ~60 GB/s the memory delivers on
// a quiet day. Rows interleaved eight at a time put one row in each 32-bit
// lane of a 256-bit vector, so one activation broadcast feeds eight rows, the
// eight scales come in one load, and the sums never leave their lanes: ~80
// GB/s in cache.
//
// Layout ("x8"), the same size as the rows it replaces. Row group g holds rows
// 8g .. 8g+7; block b of group g is 8 block sizes long (Q4_0: 144 bytes, Q8_0:
// 272) and starts at (g * nb + b) * that (nb = blocks per row):
//
//   bytes  0 .. 15     d[r]: row 8g+r's block scale (fp16), r = 0..7
//   bytes 16 ..        chunks of 32 bytes (Q4_0: 4, Q8_0: 8); chunk c holds, at
//                      bytes 4r .. 4r+3, row 8g+r's quant bytes 4c .. 4c+3:
//                        Q4_0: low nibbles are elements 4c .. 4c+3 of the
//                              block, high nibbles 16+4c .. 16+4c+3 (Q4_0's
//                              own split of a byte)
//                        Q8_0: elements 4c .. 4c+3
//
// Only CPU matmul weights whose row count is a multiple of 8 are repacked
// (backend_cpu.cpp); get_rows never sees this layout.
#pragma once
#include <cstddef>
#include <cstdint>

#include "types/dtype.h"

namespace cxr {

class ThreadPool;

constexpr int kX8Rows = 8;  // rows per group

// True for the types the layout covers (Q4_0, Q8_0).
bool x8_type(DType t);

// Bytes of one block of a group: 8 scales, then the chunks (8 source blocks
// of 18 or 34 bytes).
constexpr size_t x8_block_bytes(DType t) { return kX8Rows * (t == DType::Q4_0 ? 18 : 34); }

// Rewrites `rows` rows of `cols` elements of type t (x8_type(t), rows % 8 == 0,
// cols % 32 == 0) from src (row after row) into dst in the x8 layout.
void repack_x8(ThreadPool& pool, DType t, const uint8_t* src, int64_t rows, int64_t cols, uint8_t* dst);

// The inverse for one group: its 8 rows back in row form, row r at
// dst + r * dtype_row_bytes(t, cols). For code paths without an x8 kernel
// (the scalar fallback).
void unpack_x8_group(DType t, const uint8_t* group, int64_t cols, uint8_t* dst);

}  // namespace cxr
