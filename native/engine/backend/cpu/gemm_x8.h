// gemm_x8.h - the decode loop over x8 weights (repack.h), shared by the AVX2
// and AVX-512 kernel sets, which differ only in how a block's dot is formed.
//
// Include it inside a file's AVX2 target region (after <immintrin.h>, within
// the target pragma), like the intrinsics it uses, and after <cstring>,
// gemm.h and repack.h.
#pragma once

namespace cxr {
namespace detail {
namespace {

// The eight rows' scales of an x8 block (repack.h), as floats.
inline __m256 x8_scales(const uint8_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Chunk c of an x8 block: quant dword c of the eight rows.
inline __m256i x8_chunk(const uint8_t* p, int c) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16 + 32 * c));
}

// y[8g + r] (+ bias) for `groups` row groups at w, one token: per block, the
// eight rows' int32 dots come from block_dot(group block, the token's 32
// quants, block index), offset correction included; the eight scales are one
// load and one convert, and the sums stay in their lanes to the end.
template <DType T, int kPrefetch, typename BlockDot>
inline void x8_gemv_loop(const uint8_t* w, int64_t groups, const QActs& x, float* y, const float* bias,
                         BlockDot block_dot) {
  constexpr size_t kGroupBlock = x8_block_bytes(T);
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* p = w + static_cast<size_t>(g * x.nb) * kGroupBlock;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < x.nb; ++b, p += kGroupBlock) {
      for (size_t l = 0; l < kGroupBlock; l += 64)
        _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch + l), _MM_HINT_T0);
      const __m256i s = block_dot(p, x.q + b * 32, b);
      const __m256 d = _mm256_mul_ps(x8_scales(p), _mm256_set1_ps(x.d[b]));
      acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc);
    }
    if (bias) acc = _mm256_add_ps(acc, _mm256_loadu_ps(bias + 8 * g));
    _mm256_storeu_ps(y + 8 * g, acc);
  }
}

// Activation quants 4c .. 4c+3 of a block, in every lane.
inline __m256i x8_quad(const int8_t* xq, int c) {
  int32_t v;
  std::memcpy(&v, xq + 4 * c, 4);
  return _mm256_set1_epi32(v);
}

}  // namespace
}  // namespace detail
}  // namespace cxr
