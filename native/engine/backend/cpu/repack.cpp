// repack.cpp - the x8 layout (see repack.h): plain byte moves, so the
// repacked weights hold exactly the file's values.
#include "backend/cpu/repack.h"

#include <cstring>

#include "backend/cpu/threadpool.h"

namespace cxr {

namespace {

// Quant bytes of one source block (after its 2-byte scale).
size_t quant_bytes(DType t) { return x8_block_bytes(t) / kX8Rows - 2; }

// Moves one block of a group between the two layouts: rows[r] is row r's
// source block (scale first), x8 the group's block.
template <bool kToX8>
void move_block(uint8_t* const* rows, uint8_t* x8, size_t chunks) {
  for (int r = 0; r < kX8Rows; ++r) {
    uint8_t* blk = rows[r];
    if (kToX8) std::memcpy(x8 + 2 * r, blk, 2);
    else std::memcpy(blk, x8 + 2 * r, 2);
    for (size_t c = 0; c < chunks; ++c) {
      uint8_t* slot = x8 + 16 + 32 * c + 4 * r;
      if (kToX8) std::memcpy(slot, blk + 2 + 4 * c, 4);
      else std::memcpy(blk + 2 + 4 * c, slot, 4);
    }
  }
}

}  // namespace

bool x8_type(DType t) { return t == DType::Q4_0 || t == DType::Q8_0; }

void repack_x8(ThreadPool& pool, DType t, const uint8_t* src, int64_t rows, int64_t cols, uint8_t* dst) {
  const int64_t nb = cols / 32;
  const size_t bb = 2 + quant_bytes(t), gb = x8_block_bytes(t), chunks = quant_bytes(t) / 4;
  const size_t row_bytes = static_cast<size_t>(nb) * bb;
  pool.parallel_for(rows / kX8Rows, 8, [&](int64_t g0, int64_t g1, int) {
    for (int64_t g = g0; g < g1; ++g) {
      uint8_t* out = dst + static_cast<size_t>(g * nb) * gb;
      // Block by block: eight read streams, one sequential write stream.
      for (int64_t b = 0; b < nb; ++b, out += gb) {
        uint8_t* blocks[kX8Rows];
        for (int r = 0; r < kX8Rows; ++r)
          blocks[r] = const_cast<uint8_t*>(src) + static_cast<size_t>(g * kX8Rows + r) * row_bytes + b * bb;
        move_block<true>(blocks, out, chunks);
      }
    }
  });
}

void unpack_x8_group(DType t, const uint8_t* group, int64_t cols, uint8_t* dst) {
  const int64_t nb = cols / 32;
  const size_t bb = 2 + quant_bytes(t), gb = x8_block_bytes(t), chunks = quant_bytes(t) / 4;
  const size_t row_bytes = static_cast<size_t>(nb) * bb;
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* blocks[kX8Rows];
    for (int r = 0; r < kX8Rows; ++r) blocks[r] = dst + r * row_bytes + b * bb;
    move_block<false>(blocks, const_cast<uint8_t*>(group) + b * gb, chunks);
  }
}

}  // namespace cxr
