// content_hash.h - 64-bit hashes of memory blocks, for recognising the same
// prompt content (an image's pixels or embeddings) in the KV cache.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace cxr {

// Hash of a block of memory, eight bytes at a time.
inline uint64_t content_hash(const void* data, size_t bytes) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t h = 0x9E3779B97F4A7C15ull ^ bytes;
  size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
  }
  for (; i < bytes; ++i) h = (h ^ p[i]) * 0x94D049BB133111EBull;
  return h;
}

// A finaliser that spreads nearby inputs (hash + row) over all 64 bits.
inline uint64_t mix_hash(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace cxr
