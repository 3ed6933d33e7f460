// hd.h - what the CUDA kernels and the host tests share: CXR_HD marks a
// function for both the GPU and the CPU (plain `inline` under a C++ compiler,
// so the arithmetic of every kernel is unit-tested on machines without a GPU),
// and the few primitives whose device form is an intrinsic: bit casts, fp16 and
// bf16 to fp32, unaligned 32-bit loads from quant blocks, and dp4a.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define CXR_HD __host__ __device__ __forceinline__
#else
#define CXR_HD inline
#endif

namespace cxr {
namespace cuda {

CXR_HD float float_of_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

CXR_HD uint32_t bits_of_float(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

// IEEE half bits -> float, exact for every input (subnormals, inf, NaN).
CXR_HD float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0) {
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;  // mant * 2^-24
    return sign ? -v : v;
  }
  if (exp == 31) return float_of_bits(sign | 0x7f800000u | (mant << 13));
  return float_of_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

CXR_HD float bf16_to_float(uint16_t h) { return float_of_bits(static_cast<uint32_t>(h) << 16); }

// float -> IEEE half bits, round to nearest even (what the KV cache stores).
CXR_HD uint16_t float_to_half(float f) {
  const uint32_t u = bits_of_float(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) return static_cast<uint16_t>(sign | (a == 0x7f800000u ? 0x7c00u : 0x7e00u | ((a >> 13) & 0x3ffu)));
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504
  if (a < 0x38800000u) {
    // Subnormal half: scale to units of 2^-24 and round to nearest even by hand.
    const float v = float_of_bits(a) * 16777216.0f;
    uint32_t q = static_cast<uint32_t>(v);
    const float rem = v - static_cast<float>(q);
    if (rem > 0.5f || (rem == 0.5f && (q & 1u))) ++q;
    return static_cast<uint16_t>(sign | q);
  }
  const uint32_t r = a - (112u << 23) + 0xfffu + ((a >> 13) & 1u);
  return static_cast<uint16_t>(sign | (r >> 13));
}

// 32 bits from a pointer that is only 2-byte aligned: quant blocks are 18, 34
// and 210 bytes long, so their fields sit at every even offset.
CXR_HD int32_t load_i32_a2(const void* p) {
  const uint16_t* h = static_cast<const uint16_t*>(p);
  return static_cast<int32_t>(static_cast<uint32_t>(h[0]) | (static_cast<uint32_t>(h[1]) << 16));
}

// Σ of the four signed-byte products of a and b, plus c (the dp4a instruction).
CXR_HD int32_t dp4a(int32_t a, int32_t b, int32_t c) {
#if defined(__CUDA_ARCH__)
  return __dp4a(a, b, c);
#else
  for (int i = 0; i < 4; ++i)
    c += static_cast<int8_t>(static_cast<uint32_t>(a) >> (8 * i)) * static_cast<int8_t>(static_cast<uint32_t>(b) >> (8 * i));
  return c;
#endif
}

}  // namespace cuda
}  // namespace cxr
