// repack.cpp - the q4_0x8 layout (see repack.h): plain byte moves, so the
// repacked weights hold exactly the file's values.
#include "repack.h"

#include <cstring>

#include "threadpool.h"

namespace cxr {

namespace {

constexpr size_t kQ4BlockBytes = 18;  // fp16 scale + 16 bytes of nibbles

}  // namespace

void repack_q4_0_x8(ThreadPool& pool, const uint8_t* src, int64_t rows, int64_t cols, uint8_t* dst) {
  const int64_t nb = cols / 32;
  const size_t row_bytes = static_cast<size_t>(nb) * kQ4BlockBytes;
  pool.parallel_for(rows / kQ4x8Rows, 8, [&](int64_t g0, int64_t g1, int) {
    for (int64_t g = g0; g < g1; ++g) {
      const uint8_t* rows8 = src + static_cast<size_t>(g * kQ4x8Rows) * row_bytes;
      uint8_t* out = dst + static_cast<size_t>(g * nb) * kQ4x8BlockBytes;
      // Block by block: eight read streams, one sequential write stream.
      for (int64_t b = 0; b < nb; ++b, out += kQ4x8BlockBytes) {
        for (int r = 0; r < kQ4x8Rows; ++r) {
          const uint8_t* blk = rows8 + r * row_bytes + b * kQ4BlockBytes;
          std::memcpy(out + 2 * r, blk, 2);
          for (int c = 0; c < 4; ++c) std::memcpy(out + 16 + 32 * c + 4 * r, blk + 2 + 4 * c, 4);
        }
      }
    }
  });
}

void unpack_q4_0_x8_group(const uint8_t* group, int64_t cols, uint8_t* dst) {
  const int64_t nb = cols / 32;
  const size_t row_bytes = static_cast<size_t>(nb) * kQ4BlockBytes;
  for (int64_t b = 0; b < nb; ++b, group += kQ4x8BlockBytes) {
    for (int r = 0; r < kQ4x8Rows; ++r) {
      uint8_t* blk = dst + r * row_bytes + b * kQ4BlockBytes;
      std::memcpy(blk, group + 2 * r, 2);
      for (int c = 0; c < 4; ++c) std::memcpy(blk + 2 + 4 * c, group + 16 + 32 * c + 4 * r, 4);
    }
  }
}

}  // namespace cxr
