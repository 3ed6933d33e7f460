// dtype.h - tensor element types, numbered exactly as ggml numbers them in GGUF.
//
// Only the types this engine implements are listed. Any other id found in a file
// is rejected by the GGUF reader with a clear error, never guessed at.
#pragma once
#include <cstddef>
#include <cstdint>

namespace cxr {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q8_0 = 8,
  Q4_K = 12,
  Q6_K = 14,
  Q8_K = 15,  // activation-only type: the partner of Q4_K/Q6_K in dot products
  BF16 = 30,
};

// True when `id` is one of the DType values above.
bool dtype_known(uint32_t id);

// "f32", "q4_0", ... ; "unknown" for ids outside the enum.
const char* dtype_name(DType t);

// Parses the names dtype_name returns (case-insensitive). Returns false if unknown.
bool dtype_from_name(const char* name, DType* out);

// Elements per block (1 for plain float types).
int64_t dtype_block_size(DType t);

// Bytes per block.
size_t dtype_block_bytes(DType t);

// Bytes for a row of n elements. n must be a multiple of the block size.
size_t dtype_row_bytes(DType t, int64_t n);

}  // namespace cxr
