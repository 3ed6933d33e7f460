// limits.h - the engine's size limits, defined once. The addon exports them to
// JS as `limits` (lib/runtime/limits.ts), where options are checked against
// them; the engine keeps the checks that protect memory against the same values.
#pragma once
#include <cstdint>

namespace cxr::limits {

// Largest decoded image (width * height), against decompression bombs; a
// 10000x10000 film fits.
inline constexpr int64_t kMaxImagePixels = 100'000'000;

// Largest KV cache, in tokens.
inline constexpr int64_t kMaxContext = int64_t{1} << 20;

// Most CPU threads a backend may start.
inline constexpr int32_t kMaxThreads = 1024;

// Most alternatives recorded per generated token with logprobs.
inline constexpr int32_t kMaxLogprobs = 100;

}  // namespace cxr::limits
