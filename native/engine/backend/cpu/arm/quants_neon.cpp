// quants_neon.cpp - NEON kernels for the hottest dot products.
//
// Deliberately plain: widening multiplies (vmull_s8) and pairwise adds, no
// dot-product extension, so it runs on every NEON CPU (AArch64 and ARMv7).
// The integer dots sum each block exactly in int32 and then do the same float
// work as the scalar reference, so their results match it.
// Compiles to nothing where NEON is not available.
#include <cstddef>
#include <cstdint>

#include "types/quant_blocks.h"
#include "types/quants.h"
#include "backend/cpu/kernel_sets.h"

#if defined(__ARM_NEON)

#include <arm_neon.h>

namespace cxr {
namespace {

inline int32_t hsum_s32(int32x4_t v) {
  int32x2_t t = vadd_s32(vget_low_s32(v), vget_high_s32(v));
  t = vpadd_s32(t, t);
  return vget_lane_s32(t, 0);
}

inline float hsum_f32(float32x4_t v) {
  float32x2_t t = vadd_f32(vget_low_f32(v), vget_high_f32(v));
  t = vpadd_f32(t, t);
  return vget_lane_f32(t, 0);
}

inline float32x4_t fma4(float32x4_t acc, float32x4_t a, float32x4_t b) {
#if defined(__aarch64__)
  return vfmaq_f32(acc, a, b);
#else
  return vmlaq_f32(acc, a, b);
#endif
}

// Sum of a[i]*b[i] over 32 signed bytes given as two 16-byte halves. Each int16
// lane receives two products (at most 2*128*128 = 32768 in magnitude only for
// -128*-128, which no quantizer emits), then pairs widen into int32.
inline int32_t dot32_i8(int8x16_t a0, int8x16_t a1, int8x16_t b0, int8x16_t b1) {
  int16x8_t p0 = vmull_s8(vget_low_s8(a0), vget_low_s8(b0));
  p0 = vmlal_s8(p0, vget_high_s8(a0), vget_high_s8(b0));
  int16x8_t p1 = vmull_s8(vget_low_s8(a1), vget_low_s8(b1));
  p1 = vmlal_s8(p1, vget_high_s8(a1), vget_high_s8(b1));
  return hsum_s32(vaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1)));
}

void f32_vec_dot(int64_t n, float* s, const void* vx, const void* vy) {
  const float* x = static_cast<const float*>(vx);
  const float* y = static_cast<const float*>(vy);
  float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = fma4(a0, vld1q_f32(x + i), vld1q_f32(y + i));
    a1 = fma4(a1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
    a2 = fma4(a2, vld1q_f32(x + i + 8), vld1q_f32(y + i + 8));
    a3 = fma4(a3, vld1q_f32(x + i + 12), vld1q_f32(y + i + 12));
  }
  for (; i + 4 <= n; i += 4) a0 = fma4(a0, vld1q_f32(x + i), vld1q_f32(y + i));
  float sum = hsum_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
  for (; i < n; ++i) sum += x[i] * y[i];
  *s = sum;
}

void q8_0_vec_dot(int64_t n, float* s, const void* vx, const void* vy) {
  const block_q8_0* x = static_cast<const block_q8_0*>(vx);
  const block_q8_0* y = static_cast<const block_q8_0*>(vy);
  float sum = 0;
  for (int64_t i = 0; i < n / QK8_0; ++i) {
    const int32_t sumi = dot32_i8(vld1q_s8(x[i].qs), vld1q_s8(x[i].qs + 16), vld1q_s8(y[i].qs),
                                  vld1q_s8(y[i].qs + 16));
    sum += static_cast<float>(sumi) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
  }
  *s = sum;
}

void q4_0_vec_dot(int64_t n, float* s, const void* vx, const void* vy) {
  const block_q4_0* x = static_cast<const block_q4_0*>(vx);
  const block_q8_0* y = static_cast<const block_q8_0*>(vy);
  const uint8x16_t low4 = vdupq_n_u8(15);
  const int8x16_t eight = vdupq_n_s8(8);
  float sum = 0;
  for (int64_t i = 0; i < n / QK4_0; ++i) {
    const uint8x16_t q = vld1q_u8(x[i].qs);
    // Low nibbles are elements 0..15, high nibbles 16..31; both shifted to -8..7.
    const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, low4)), eight);
    const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), eight);
    const int32_t sumi = dot32_i8(lo, hi, vld1q_s8(y[i].qs), vld1q_s8(y[i].qs + 16));
    sum += static_cast<float>(sumi) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
  }
  *s = sum;
}

}  // namespace

namespace detail {

void install_neon_types(CpuKernels& k) {
  static constexpr TypeKernelSet kSets[] = {
      {DType::F32, nullptr, nullptr, f32_vec_dot},
      {DType::Q8_0, nullptr, nullptr, q8_0_vec_dot},
      {DType::Q4_0, nullptr, nullptr, q4_0_vec_dot},
  };
  install_type_kernels(k, kSets, sizeof(kSets) / sizeof(kSets[0]));
}

}  // namespace detail
}  // namespace cxr

#endif  // __ARM_NEON
